// The Llama module.
