import ArgumentParser
import Foundation
import Llama

struct GenerateCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "generate",
        abstract: "Generate text from a prompt (or from BOS), printed as it streams.",
        discussion: """
            Greedy with --temp 0; otherwise softmax sampling at that temperature within the top-p \
            nucleus. Generation stops after -n tokens, or at an end-of-sequence or beginning-of-\
            sequence token (unless --ignore-eos). The prompt is printed first (without BOS). \
            --prompt TEXT needs the tokenizer (issue 3) and is not available yet: use --prompt-tokens.
            """)

    @Option(name: .long, help: "A LLaMA GGUF model.")
    var model: String

    @Option(name: .long, help: "Prompt text (needs the tokenizer; not available yet).")
    var prompt: String?

    @Option(name: .long, help: "Prompt token ids, e.g. 1,403,407 (BOS is added if the model wants it).")
    var promptTokens: String?

    @Option(name: [.customShort("n"), .long], help: "Tokens to generate.")
    var maxTokens = 256

    @Option(name: .long, help: "Temperature; 0 is greedy.")
    var temp: Float = 1.0

    @Option(name: .long, help: "Top-p nucleus (1 disables it).")
    var topP: Float = 0.9

    @Option(name: .long, help: "Random seed (default: the clock).")
    var seed: UInt64?

    @Flag(name: .long, help: "Do not stop at end-of-sequence tokens.")
    var ignoreEOS = false

    func validate() throws {
        if prompt != nil {
            throw ValidationError("--prompt needs the tokenizer, which is not in this build yet; give token ids with --prompt-tokens")
        }
        if maxTokens < 0 { throw ValidationError("-n must not be negative") }
        if temp < 0 { throw ValidationError("--temp must not be negative") }
    }

    func run() throws {
        let m = try loadModel(model)
        var text = PieceText(m.gguf)
        if text == nil { printErr("note: \(model) has no tokenizer.ggml.tokens; printing token ids") }

        var ids: [Int32] = try promptTokens.map(parseTokenList) ?? []
        let bos = text?.bos ?? 1
        if text?.addBOS ?? true, ids.first != bos { ids.insert(bos, at: 0) }
        let stops: Set<Int32> = ignoreEOS ? [] : Set([text?.eos, text?.bos].compactMap { $0 })

        let context = min(m.config.contextLength, ids.count + maxTokens)
        guard ids.count <= context else {
            throw CLIError("the prompt has \(ids.count) tokens; the model's context is \(m.config.contextLength)")
        }
        let out = FileHandle.standardOutput
        func emit(_ token: Int32) {
            let s = text != nil ? text!.append(token) : "\(token) "
            if !s.isEmpty { out.write(Data(s.utf8)) }
        }
        do {
            let session = try LlamaSession(model: m, contextLength: max(context, 1))
            let sampler = Sampler(vocabSize: m.config.vocabSize, temperature: temp, topP: topP,
                                  seed: seed ?? UInt64(Date().timeIntervalSince1970 * 1e6))
            for t in ids { emit(t) }
            var next: Int32 = 0
            try session.prefill(ids, logits: .last) { _, logits in next = sampler.sample(logits) }
            for step in 0..<maxTokens {
                if stops.contains(next) { break }
                emit(next)
                if step + 1 == maxTokens { break }
                next = try session.decode(next) { sampler.sample($0) }
            }
        } catch { throw CLIError(path: model, "\(error)") }
        if let rest = text?.flush(), !rest.isEmpty { out.write(Data(rest.utf8)) }
        out.write(Data("\n".utf8))
    }
}
