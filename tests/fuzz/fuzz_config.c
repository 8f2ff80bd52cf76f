/* libFuzzer harness: `chargan train --config FILE` with FILE a JSON configuration (the kind
 * every checkpoint saves): cg_settings_parse reads the file and sets the saved settings,
 * cg_settings_resolve fills in the preset's, as src/cli/cmd_train.c does. Then what the
 * run does with them: the configuration it saves (cg_settings_json) and the resume check
 * against a checkpoint holding the same text (cg_settings_check_resume).
 *
 * Checked besides memory safety: whatever a configuration sets, the run's saved
 * configuration reads back to the same settings, and passes its own resume check (else
 * `--config CHECKPOINT` or a resume of that run would fail or differ).
 *
 * Files starting with the HDF5 signature take the checkpoint route (libhdf5 parses them);
 * that is the HDF5 library's input, not chargan's, and is not fuzzed here. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "chargan/json.h"
#include "chargan/settings.h"
#include "fuzz_util.h"

/* The run's configuration as saved, read back into fresh defaults and saved again: the two
 * texts must be equal, and each must pass the resume check of the other's settings. */
static void check_round_trip(const cg_train_opts *o)
{
    json_t *cfg = cg_settings_json(o);
    char *text = cg_json_text(cfg);
    if (!text)
        abort();
    cg_train_opts back;
    cg_train_default_opts(&back);
    cg_error e = {{0}};
    if (cg_settings_from_json(&back, cfg, "saved", &e))
        abort(); /* a saved configuration that --config refuses */
    json_t *again = cg_settings_json(&back);
    if (!json_equal(cfg, again))
        abort(); /* a setting that does not survive the round trip */
    if (cg_settings_check_resume(o, text, "saved", &e))
        abort();
    json_decref(again);
    json_decref(cfg);
    free(text);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size >= 8 && !memcmp(data, "\211HDF\r\n\032\n", 8))
        return 0;
    char path[1024];
    fz_path(path, sizeof path, "config.json");
    fz_write(path, data, size);
    char arg0[] = "--config";
    char *argv[] = {arg0, path, NULL};
    cg_train_opts o;
    cg_train_default_opts(&o);
    json_t *saved = NULL;
    cg_error e = {{0}};
    int rc = cg_settings_parse(&o, 2, argv, &saved, &e);
    if (rc == 0)
        rc = cg_settings_resolve(&o, &e);
    fz_report("config", rc, &e);
    if (rc == 0)
        check_round_trip(&o);
    /* the input as a checkpoint's configuration text, checked against these settings */
    char *text = malloc(size + 1);
    if (!text)
        abort();
    memcpy(text, data, size);
    text[size] = 0;
    cg_settings_check_resume(&o, text, "ckpt.h5", &e);
    free(text);
    json_decref(saved);
    fz_clean();
    return 0;
}
