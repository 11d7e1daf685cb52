// zstd one-shot compression API (Debian: libzstd-dev).
#include <zstd.h>
