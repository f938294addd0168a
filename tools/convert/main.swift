// palr-convert: offline model preparation. The logic lives in the Convert library.
import FileSafety
#if canImport(Glibc)
import Glibc
#endif

// The GGUF writer registers its temporary once it is locked; these handlers remove it
// on SIGINT, SIGTERM and SIGHUP (SIGKILL cannot be caught: the next writer of OUT
// removes what is left).
SignalCleanup.installHandlers()
// Over a file-size limit (`ulimit -f`) a write fails with EFBIG, reported with the path,
// instead of SIGXFSZ killing the process without a word.
signal(SIGXFSZ, SIG_IGN)
PalrConvert.main()
