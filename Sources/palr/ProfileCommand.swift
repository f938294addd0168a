import ArgumentParser
import Foundation
import History
import Ranker

struct ProfileCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "profile",
        abstract: "Show or rebuild a profile's keyword summary (PALR stage 1), written by the model.",
        discussion: """
            The summary is regenerated when it is missing, with --regenerate, or when the history \
            changed by at least palr.profile_refresh_after interactions since it was made. \
            `palr recommend` never generates one; `palr refresh` and this command do.
            """)

    @OptionGroup var pipeline: PipelineOptions

    @Option(name: .long, help: "The profile.")
    var profile: String

    @Flag(name: .long, help: "Generate a new summary even if the stored one is fresh.")
    var regenerate = false

    @Flag(name: .long, help: "Print JSON.")
    var json = false

    func run() throws {
        let rec = try pipeline.makeRecommender(quiet: json, keepsPrompts: false)
        let result: (summary: ProfileSummary, generated: GeneratedProfile?)
        do { result = try rec.refreshProfile(profile, force: regenerate) } catch { throw rankingError(error, model: pipeline.model) }
        if json {
            struct Out: Encodable { let profile: String; let summary: String; let historyDigest: String
                                    let interactionCount: Int; let createdAt: Int64; let generated: GeneratedProfile? }
            let o = Out(profile: profile, summary: result.summary.text, historyDigest: result.summary.historyDigest.description,
                        interactionCount: result.summary.interactionCount, createdAt: result.summary.createdAt, generated: result.generated)
            let enc = JSONEncoder()
            enc.outputFormatting = [.sortedKeys]
            print(String(decoding: try enc.encode(o), as: UTF8.self))
            return
        }
        print("profile \(terminalSafe(profile)): \(result.summary.text.isEmpty ? "(empty summary)" : result.summary.text)")
        if let g = result.generated {
            print(String(format: "generated now from %d titles: prompt %d tokens in %.2f s, %d tokens at %.1f tok/s (stop: %@), total %.2f s",
                         g.historyUsed, g.promptTokens, g.promptSeconds, g.generatedTokens, g.decodeTokensPerSecond,
                         g.stop as NSString, g.promptSeconds + g.decodeSeconds))
        } else {
            print("stored summary reused (made from \(result.summary.interactionCount) interactions)")
        }
    }
}
