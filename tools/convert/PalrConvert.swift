// palr-convert: offline tools for model engineers. Each subcommand lives in its own file.

import ArgumentParser

@main
struct PalrConvert: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "palr-convert",
        abstract: "Offline converters: catalog packs (and, later, models).",
        subcommands: [
            CatalogCommand.self,
        ]
    )
}
