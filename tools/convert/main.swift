// palr-convert: offline model preparation. The logic lives in the Convert library.
import FileSafety

// The GGUF writer registers its temporary once it is locked; these handlers remove it
// on SIGINT, SIGTERM and SIGHUP (SIGKILL cannot be caught: the next writer of OUT
// removes what is left).
SignalCleanup.installHandlers()
PalrConvert.main()
