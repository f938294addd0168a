// The Ranker module.
