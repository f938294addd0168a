// The Tokenizer module.
