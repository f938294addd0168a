import ArgumentParser

struct PalrConvert: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "palr-convert",
        abstract: "Prepare files for palr: Hugging Face checkpoints to GGUF, random benchmark models.",
        subcommands: [
            HFCommand.self,
            RandomCommand.self,
        ]
    )
}
