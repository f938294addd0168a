import ArgumentParser
import Foundation
import Llama
import Tokenizer

struct GenerateCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "generate",
        abstract: "Generate text from a prompt (or from BOS), printed as it streams.",
        discussion: """
            Greedy with --temp 0; otherwise softmax sampling at that temperature within the top-p \
            nucleus. Generation stops after -n tokens, or at an end-of-sequence or beginning-of-\
            sequence token (unless --ignore-eos). The prompt is printed first (without BOS). \
            BOS is prepended when the model's tokenizer.ggml.add_bos_token says so (the default).
            """)

    @Option(name: .long, help: "A LLaMA GGUF model.")
    var model: String

    @Option(name: .long, help: "Prompt text (encoded with the model's tokenizer).")
    var prompt: String?

    @Option(name: .long, help: "Prompt token ids, e.g. 1,403,407 (BOS is added if the model wants it).")
    var promptTokens: String?

    @Option(name: [.customShort("n"), .long], parsing: .unconditional, help: "Tokens to generate.")
    var maxTokens = 256

    @Option(name: .long, parsing: .unconditional, help: "Temperature; 0 is greedy.")
    var temp: Float = 1.0

    @Option(name: .long, parsing: .unconditional, help: "Top-p nucleus, above 0 and at most 1 (1 disables it).")
    var topP: Float = 0.9

    @Option(name: .long, help: "Random seed (default: the clock).")
    var seed: UInt64?

    @Flag(name: .long, help: "Do not stop at end-of-sequence tokens.")
    var ignoreEOS = false

    func validate() throws {
        if prompt != nil && promptTokens != nil { throw ValidationError("give --prompt or --prompt-tokens, not both") }
        if let promptTokens { _ = try parseTokenList(promptTokens) }
        if maxTokens < 0 { throw ValidationError("-n must not be negative (got \(maxTokens))") }
        if !temp.isFinite || temp < 0 { throw ValidationError("--temp must be a finite number ≥ 0 (got \(temp))") }
        // 0 would read as "the smallest nucleus" but the sampler takes it as "no nucleus":
        // refused rather than sampling from everything.
        if !topP.isFinite || topP <= 0 || topP > 1 { throw ValidationError("--top-p must be above 0 and at most 1 (got \(topP))") }
    }

    func run() throws {
        let m = try loadModel(model)
        var tokenizer: SentencePieceTokenizer?
        do { tokenizer = try SentencePieceTokenizer(gguf: m.gguf) } catch {
            if prompt != nil { throw CLIError(path: model, error) }
            printErr("note: \(model): \(error); printing token ids")
        }
        var text = tokenizer?.makeStreamingDecoder()
        let addBOS = tokenizer?.vocabulary.addBOS ?? true
        let bos = tokenizer?.bos ?? 1

        var ids: [Int32] = []
        if let prompt, let tokenizer {
            ids = tokenizer.encode(prompt, addBOS: addBOS)
        } else if let promptTokens {
            ids = try parseTokenList(promptTokens)
        }
        if addBOS, ids.first != bos { ids.insert(bos, at: 0) }
        // Checked before anything is printed: with no token the model computes no logits
        // to sample from, and an id outside the vocabulary would fail mid-output.
        guard !ids.isEmpty else {
            throw CLIError(path: model, "the prompt is empty and the model adds no BOS token; give --prompt or --prompt-tokens")
        }
        if let bad = ids.first(where: { $0 < 0 || Int($0) >= m.config.vocabSize }) {
            throw CLIError(path: model, "prompt token \(bad) is outside the model's vocabulary (0…\(m.config.vocabSize - 1))")
        }
        let stops: Set<Int32> = ignoreEOS ? [] : Set([tokenizer?.eos, tokenizer?.bos].compactMap { $0 })

        guard ids.count <= m.config.contextLength else {
            throw CLIError(path: model, "the prompt has \(ids.count) tokens; the model's context is \(m.config.contextLength)")
        }
        // The last token printed is never run through the model, so n tokens need n - 1 positions.
        let steps = min(maxTokens, m.config.contextLength - ids.count + 1)
        if steps < maxTokens { printErr("note: stopping after \(steps) tokens, at the model's context of \(m.config.contextLength)") }
        let context = ids.count + max(steps - 1, 0)
        // Streamed as it is generated; a closed or full standard output ends the run
        // with an error (not a trap).
        func emit(_ token: Int32) throws {
            let s = text?.append(token) ?? "\(token) "
            if !s.isEmpty { try writeNow(s) }
        }
        do {
            let session = try LlamaSession(model: m, contextLength: max(context, 1))
            let sampler = try Sampler(vocabSize: m.config.vocabSize, temperature: temp, topP: topP,
                                  seed: seed ?? UInt64(Date().timeIntervalSince1970 * 1e6))
            for t in ids { try emit(t) }
            var next: Int32 = 0
            try session.prefill(ids, logits: .last) { _, logits in next = try sampler.sample(logits) }
            for step in 0..<steps {
                if stops.contains(next) { break }
                try emit(next)
                if step + 1 == steps { break }
                next = try session.decode(next) { try sampler.sample($0) }
            }
        } catch let error as CLIError {
            throw error
        } catch { throw CLIError(path: model, "\(error)") }
        try writeNow((text?.finish() ?? "") + "\n")
    }
}
