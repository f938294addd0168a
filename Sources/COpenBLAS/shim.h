// The OpenBLAS CBLAS interface (Debian: libopenblas-dev, pkg-config `openblas`).
// cblas.h also declares openblas_get_corename / openblas_set_num_threads.
// Note: Debian 0.3.21 declares cblas_sbgemm but does not export it; never call it.
#include <cblas.h>
