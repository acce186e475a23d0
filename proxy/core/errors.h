/* keel's one return vocabulary (STYLE.md "Returns").
 *
 * 0 is success, negative values are errors from this enum, and the small
 * positive values are the phase-handler outcomes. kl_strerror() names them
 * all. */
#ifndef KL_CORE_ERRORS_H
#define KL_CORE_ERRORS_H

enum {
    KL_OK = 0,
    /* phase handler outcomes */
    KL_DECLINED = 1, /* not mine: next handler */
    KL_DONE = 2,     /* answered, stop */
    KL_AGAIN = 3,    /* resumed later by a callback */
    /* errors */
    KL_ERR = -1,     /* unspecified failure */
    KL_EINVAL = -2,  /* invalid argument or input */
    KL_ENOMEM = -3,  /* allocation failed */
    KL_ENOENT = -4,  /* no such thing */
    KL_EEXIST = -5,  /* already there */
    KL_ERANGE = -6,  /* value out of range */
    KL_ETOOBIG = -7, /* exceeds a configured limit */
    KL_EPROTO = -8,  /* protocol violation (framing, syntax) */
    KL_EIO = -9,     /* socket or file error, errno has the detail */
    KL_ETIMEDOUT = -10,
    KL_EBUSY = -11,       /* a limit on concurrent work was reached */
    KL_EPERM = -12,       /* refused by policy */
    KL_EINCOMPLETE = -13, /* need more bytes (stream framing) */
};

/* Returns a static string naming <err>. Any thread. */
const char *kl_strerror(int err);

#endif
