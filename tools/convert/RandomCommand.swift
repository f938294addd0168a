import ArgumentParser
import Tokenizer
import Convert
import GGUF

extension RandomShape: ExpressibleByArgument {}

struct RandomCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "random",
        abstract: "Write a random-weight LLaMA GGUF of a standard shape or of a config.json, for benchmarks.",
        discussion: """
            Shapes: tiny (dim 256, 4 layers, 8 heads / 4 kv, ffn 768, vocab 1024, context 512); \
            1b (TinyLlama: dim 2048, 22 layers, 32 heads / 4 kv, ffn 5632, vocab 32000, context 2048); \
            7b (LLaMA-2: dim 4096, 32 layers, 32 heads, ffn 11008, vocab 32000, context 4096). \
            Or --config: the shape a Hugging Face config.json describes, read as `hf` reads it \
            (e.g. a fine-tune's, to measure it on a box before converting the weights). \
            Tensor types follow `hf` (Q8_0 output for q4_0). The vocabulary is a placeholder of the \
            right size (<unk>, <s>, </s>, byte tokens, tokN); the text it produces means nothing.
            """)

    @Option(name: .long, help: "tiny, 1b or 7b.")
    var shape: RandomShape?

    @Option(name: .long, help: "A LLaMA config.json, or a checkpoint folder holding one: its shape instead of --shape.")
    var config: String?

    @Option(name: .long, help: "Type of the weight matrices: q4_0, q8_0, f16, bf16 or f32.")
    var type: TypeArgument = .q4_0

    @Option(name: [.short, .customLong("output")], help: "The GGUF file to write (replaced atomically).")
    var output: String

    @Option(name: .long, parsing: .unconditional, help: "Random seed, a whole number ≥ 0 (same seed, same file).")
    var seed: UInt64 = 0

    @Option(name: .long, parsing: .unconditional, help: "Threads, at least 1 (default: all cores).")
    var threads: Int?

    @Option(name: .long, help: "A SentencePiece tokenizer.model of the shape's vocabulary size (default: a placeholder vocabulary).")
    var tokenizer: String?

    @Option(name: .long, help: "PALR settings (palr.* keys) from a JSON object, as for `hf` (default: the defaults).")
    var palrConfig: String?

    func validate() throws {
        guard (shape == nil) != (config == nil) else {
            throw ValidationError(shape == nil ? "give --shape or --config" : "give --shape or --config, not both")
        }
        try check("--threads", threads, atLeast: 1)
        try checkOutputOption(output)
    }

    func run() throws {
        try prepareOutput(output, inputs: [tokenizer, config, palrConfig].compactMap { $0 })
        var options = ConvertOptions()
        options.type = type.ggml
        options.threads = threads ?? defaultThreads()
        if let palrConfig {
            do {
                options.settings = try PalrSettings(jsonFile: palrConfig)
                try options.settings.validate()
            } catch { throw ToolError(error) }
        }
        var display = ProgressDisplay()
        let start = now()
        var total = 0
        do {
            let tok = try tokenizer.map { path throws in
                do { return try SentencePieceTokenizer(modelFile: path) } catch {
                    // An open error ("cannot open PATH: not a regular file (a FIFO)") names the file already.
                    if let e = error as? TokenizerError, case .gguf(.cannotOpen) = e { throw ToolError(e) }
                    throw ToolError("\(path): \(error)")
                }
            }
            let progress = { (i: Int, n: Int, p: GGUFTensorPlan) in
                total += p.byteCount
                display.update(index: i, count: n, done: total, total: 0, line: "\(p.name) \(p.dims) \(p.type)")
            }
            if let shape {
                try RandomModel.write(shape: shape, options: options, seed: seed, to: output, tokenizer: tok, progress: progress)
            } else if let config {
                let hf = try HFConfig(file: config)
                try RandomModel.write(config: hf, shapeName: HFConfig.path(of: config), name: "palr-random", options: options, seed: seed,
                                      to: output, tokenizer: tok, progress: progress)
            }
        } catch let e as ToolError { throw e } catch let e as ConvertError { throw ToolError(e) } catch { throw ToolError("\(error)") }
        let secs = ((now() - start) * 10).rounded() / 10
        let what = shape.map { "random \($0.rawValue) model" } ?? "random model of \(config ?? "")"
        printErr("wrote \(output): \(what), \(formatBytes(total)) of tensor data in \(secs) s")
    }
}
