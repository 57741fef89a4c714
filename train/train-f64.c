/* train-f64.c: the double instance of train-tmpl.c (the finite-difference checks' precision). */
#include <cblas.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ops.h"
#include "train.h"

#define R double
#define P f64
#define GEMM cblas_dgemm
#include "train-tmpl.c"
