// palr-convert: offline model preparation. The logic lives in the Convert library.
PalrConvert.main()
