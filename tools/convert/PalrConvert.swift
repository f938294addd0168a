// palr-convert: offline tools for model engineers. Each subcommand lives in its own file;
// the logic lives in the Convert and Catalog libraries.

import ArgumentParser

struct PalrConvert: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "palr-convert",
        abstract: "Prepare files for palr: Hugging Face checkpoints to GGUF, catalog packs, random benchmark models.",
        subcommands: [
            HFCommand.self,
            CatalogCommand.self,
            RandomCommand.self,
        ]
    )
}
