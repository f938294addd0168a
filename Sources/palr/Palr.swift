import ArgumentParser

struct Palr: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "palr",
        abstract: "On-device PALR recommender: history store, retrieval and LLM ranking.",
        discussion: """
            Model engineers: `info`, `logits`, `tokenize`, `generate`. Environment: OPENBLAS_CORETYPE (palr sets it \
            itself when OpenBLAS misdetects the CPU; an explicit value always wins).
            """,
        subcommands: [
            InfoCommand.self,
            LogitsCommand.self,
            BenchCommand.self,
            HistoryCommand.self,
            TokenizeCommand.self,
            EvalCommand.self,
            RetrieveCommand.self,
            RecommendCommand.self,
            RefreshCommand.self,
            ProfileCommand.self,
            DemoCommand.self,
            GenerateCommand.self,
        ]
    )
}
