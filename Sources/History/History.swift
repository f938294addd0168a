// The History module.
