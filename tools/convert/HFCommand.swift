import ArgumentParser
import Convert
import GGUF

struct HFCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "hf",
        abstract: "Convert a Hugging Face LlamaForCausalLM checkpoint (optionally with LoRA adapters) to GGUF.",
        discussion: """
            DIR holds config.json, model.safetensors (or model.safetensors.index.json and its shards; \
            F32, F16 or BF16) and tokenizer.model. Types: 2-D weights take --type; the output projection \
            (and token_embd when tied to it) takes --output-type, by default Q8_0 for Q4_0 and --type \
            otherwise; a matrix whose rows are not a multiple of 32 is written as F16 (a note says which); \
            norms stay F32. LoRA adapters are merged in fp32 before quantizing, in the order given.
            PALR settings (palr.* keys) come from --palr-config FILE.json (an object with the keys \
            \(PalrSettings.jsonKeys.map { "\"\($0)\"" }.joined(separator: ", ")); any other key is an error) \
            and the flags, flags winning. Defaults: scoring mode letters, 20 history items (history step 1), 20 candidates, \
            32 title tokens, retrieval prior 0 (off), no template (the ranker's built-in one).
            The output is written to OUT.tmp-PID beside OUT (beside the file OUT points to when OUT is a \
            symbolic link), fsynced and renamed over OUT. An OUT that is not a regular file (a device, FIFO, \
            socket or folder) is refused; OUT.tmp-PID files of killed runs are removed.
            """)

    @Argument(help: "The checkpoint folder.")
    var directory: String

    @Option(name: [.short, .customLong("output")], help: "The GGUF file to write (replaced atomically).")
    var output: String?

    @Option(name: .long, help: "Type of the weight matrices: q4_0, q8_0, f16, bf16 or f32.")
    var type: TypeArgument = .q4_0

    @Option(name: .long, help: "Type of the output projection (default: q8_0 for --type q4_0, else --type).")
    var outputType: TypeArgument?

    @Option(name: .long, help: "A PEFT LoRA adapter folder to merge (repeatable; merged in order).")
    var lora: [String] = []

    @Option(name: .long, help: "A JSON file of PALR settings.")
    var palrConfig: String?

    @Option(name: .long, help: "palr.prompt_template.")
    var promptTemplate: String?

    @Option(name: .long, help: "palr.scoring_mode: letters, likelihood or generate (default letters).")
    var scoringMode: String?

    @Option(name: .long, parsing: .unconditional, help: "palr.max_history, 1–65536 (default 20).")
    var maxHistory: Int?

    @Option(name: .long, parsing: .unconditional,
            help: "palr.history_step, 1–max history: the prompt's history window starts at multiples of it, so a grown history's prompt keeps its first lines (default 1: always the latest max-history items).")
    var historyStep: Int?

    @Option(name: .long, parsing: .unconditional, help: "palr.max_candidates, 1–65536, at most 20 in letters mode (labels A…T; default 20).")
    var maxCandidates: Int?

    @Option(name: .long, parsing: .unconditional, help: "palr.title_token_limit, 1–65536 (default 32).")
    var titleTokenLimit: Int?

    @Option(name: .long, parsing: .unconditional,
            help: "palr.retrieval_prior, 0–1000: weight of the retrieval order in the final score, score − w·ln(1 + position) (default 0: off).")
    var retrievalPrior: Double?

    @Option(name: .long, help: "general.name (default: the folder's name).")
    var name: String?

    @Flag(name: .long, help: "Convert without tokenizer.model (no tokenizer.ggml.* keys).")
    var noTokenizer = false

    @Option(name: .long, parsing: .unconditional, help: "Threads per tensor, at least 1 (default: all cores).")
    var threads: Int?

    @Flag(name: .long, help: "Check everything and print the plan; write nothing.")
    var dryRun = false

    func validate() throws {
        if output == nil && !dryRun { throw ValidationError("give -o OUT.gguf (or --dry-run)") }
        try checkOutputOption(output)
        let counts = PalrSettings.countRange
        try check("--max-history", maxHistory, atLeast: counts.lowerBound, atMost: counts.upperBound)
        try check("--history-step", historyStep, atLeast: counts.lowerBound, atMost: counts.upperBound)
        try check("--max-candidates", maxCandidates, atLeast: counts.lowerBound, atMost: counts.upperBound)
        try check("--title-token-limit", titleTokenLimit, atLeast: counts.lowerBound, atMost: counts.upperBound)
        try check("--retrieval-prior", retrievalPrior, in: PalrSettings.retrievalPriorRange)
        try check("--threads", threads, atLeast: 1)
    }

    func run() throws {
        // A special destination is refused before any work; whether -o names an input
        // is known once the plan says which files those are (planning reads headers only).
        if let output { try checkDestination(output) }
        var options = ConvertOptions()
        options.type = type.ggml
        options.outputType = outputType?.ggml
        options.loraDirectories = lora
        options.name = name
        options.includeTokenizer = !noTokenizer
        options.threads = threads ?? defaultThreads()
        do {
            var s = PalrSettings()
            if let f = palrConfig { s = try PalrSettings(jsonFile: f) }
            if let v = promptTemplate { s.promptTemplate = v }
            if let v = scoringMode { s.scoringMode = try PalrSettings.mode(v) }
            if let v = maxHistory { s.maxHistory = v }
            if let v = historyStep { s.historyStep = v }
            if let v = maxCandidates { s.maxCandidates = v }
            if let v = titleTokenLimit { s.titleTokenLimit = v }
            if let v = retrievalPrior { s.retrievalPrior = v }
            options.settings = s
        } catch { throw ToolError(error) }

        let plan: ConversionPlan
        do { plan = try ConversionPlan(directory: directory, options: options) } catch { throw ToolError(error) }
        if let output { try prepareOutput(output, removeStale: !dryRun, inputs: plan.inputFiles + [palrConfig].compactMap { $0 }) }
        if dryRun {
            for line in plan.describe() { print(line) }
            print("dry run: nothing written")
            return
        }
        guard let output else { return }
        noteFallbacks(plan)

        var display = ProgressDisplay()
        let start = now()
        do {
            try Converter.run(plan, to: output) { p in
                var line = "\(p.job.plan.name) \(p.job.plan.dims) \(p.job.source.dtype.rawValue)→\(p.job.plan.type)"
                if !p.job.patches.isEmpty { line += " +\(p.job.patches.count) LoRA" }
                display.update(index: p.index, count: p.count, done: p.sourceBytesDone, total: p.sourceBytesTotal, line: line)
            }
        } catch { throw ToolError(error) }
        let seconds = now() - start
        let secs = (seconds * 10).rounded() / 10
        printErr("wrote \(output): \(plan.jobs.count) tensors, \(formatBytes(plan.outputBytes)) of tensor data, "
                 + "in \(secs) s; peak RSS \(formatBytes(peakRSS()))")
    }

    /// One note per group of tensors that fell back to F16 (e.g. every ffn_down).
    func noteFallbacks(_ plan: ConversionPlan) {
        var groups: [(key: String, jobs: [TensorJob])] = []
        for j in plan.fallbacks {
            let key = j.plan.name.split(separator: ".").dropFirst(j.plan.name.hasPrefix("blk.") ? 2 : 0).joined(separator: ".")
            if let i = groups.firstIndex(where: { $0.key == key }) { groups[i].jobs.append(j) } else { groups.append((key, [j])) }
        }
        for g in groups {
            let j = g.jobs[0], from = j.fellBackFrom!
            let which = g.jobs.count == 1 ? j.plan.name : "\(g.jobs.count) tensors (blk.*.\(g.key))"
            printErr("note: \(which): rows of \(j.cols) are not a multiple of \(from)'s block of \(from.blockSize); written as F16")
        }
    }
}
