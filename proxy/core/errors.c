#include "core/errors.h"

const char *kl_strerror(int err)
{
    switch (err) {
    case KL_OK:
        return "ok";
    case KL_DECLINED:
        return "declined";
    case KL_DONE:
        return "done";
    case KL_AGAIN:
        return "again";
    case KL_ERR:
        return "error";
    case KL_EINVAL:
        return "invalid argument";
    case KL_ENOMEM:
        return "out of memory";
    case KL_ENOENT:
        return "not found";
    case KL_EEXIST:
        return "already exists";
    case KL_ERANGE:
        return "out of range";
    case KL_ETOOBIG:
        return "too big";
    case KL_EPROTO:
        return "protocol error";
    case KL_EIO:
        return "i/o error";
    case KL_ETIMEDOUT:
        return "timed out";
    case KL_EBUSY:
        return "busy";
    case KL_EPERM:
        return "not permitted";
    case KL_EINCOMPLETE:
        return "incomplete";
    }
    return "unknown error";
}
