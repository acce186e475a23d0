#include "core/module.h"

#include <string.h>

extern const kl_module_t kl_dns_module;

/* Init order. A module's position is its index in kl_conf_t.mod_conf[]. */
const kl_module_t *const kl_modules[] = {
    &kl_dns_module,
    NULL,
};

int kl_module_index(const char *name)
{
    for (int i = 0; kl_modules[i] != NULL; i++) {
        if (strcmp(kl_modules[i]->name, name) == 0)
            return i;
    }
    return -1;
}
