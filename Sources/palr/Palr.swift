import ArgumentParser

struct Palr: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "palr",
        abstract: "On-device PALR recommender: history store, retrieval and LLM ranking.",
        discussion: """
            Model engineers: `info`, `logits`, `tokenize`, `generate`. Environment: OPENBLAS_CORETYPE (palr sets it \
            itself when OpenBLAS misdetects the CPU) and OPENBLAS_NUM_THREADS (palr sets 1 under an address-space \
            limit, ulimit -v); an explicit value always wins.
            """,
        subcommands: [
            DemoCommand.self,
            RecommendCommand.self,
            RefreshCommand.self,
            ServeCommand.self,
            ProfileCommand.self,
            HistoryCommand.self,
            EvalCommand.self,
            RetrieveCommand.self,
            BenchCommand.self,
            InfoCommand.self,
            LogitsCommand.self,
            TokenizeCommand.self,
            GenerateCommand.self,
        ]
    )
}
