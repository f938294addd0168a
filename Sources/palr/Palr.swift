import ArgumentParser

@main
struct Palr: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "palr",
        abstract: "On-device PALR recommender: history store, retrieval and LLM ranking.",
        subcommands: [
            // Each subcommand lives in its own file in Sources/palr.
            EvalCommand.self, RetrieveCommand.self,
        ]
    )
}
