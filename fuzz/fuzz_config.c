/* libFuzzer harness for the config loader: any bytes as a YAML file. */
#include "core/conf.h"

#include <stdint.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    kl_cfg_errs_t *errs = malloc(sizeof(*errs));
    kl_conf_t *c;

    if (errs == NULL)
        return 0;
    c = kl_conf_load_buf("fuzz.yaml", (const char *)data, size, errs);
    kl_conf_unref(c);
    free(errs);
    return 0;
}
