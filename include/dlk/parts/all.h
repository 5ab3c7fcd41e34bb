/* DEVELOPMENT ONLY (see the end of dlk.h): the op families under construction. Included inside extern "C". */
#include "dlk/parts/gemm.h"
#include "dlk/parts/elementwise.h"
#include "dlk/parts/loss.h"
#include "dlk/parts/random.h"
#include "dlk/parts/norm_pool.h"
#include "dlk/parts/optim.h"
