#include "chargan/prof.h"

const char *const cg_prof_names[CG_PROF_N] = {"gemm", "im2col", "batchnorm", "activation",
                                              "exact_fold", "allreduce", "adam", "ema", "noise"};
