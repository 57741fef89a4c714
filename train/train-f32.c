/* train-f32.c: the float instance of train-tmpl.c (the trainer's precision). */
#include <cblas.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ops.h"
#include "train.h"

#define R float
#define P f32
#define GEMM cblas_sgemm
#include "train-tmpl.c"
