print("palr-convert: not built yet")
