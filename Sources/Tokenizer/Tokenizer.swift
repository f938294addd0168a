// SentencePiece BPE ("llama-spm"), id for id as the `sentencepiece` library encodes:
//
//   1. normalize  spaces → "▁" (U+2581); "▁" prepended (add_dummy_prefix); with
//                 remove_extra_whitespaces, leading/trailing spaces dropped and runs of
//                 spaces collapsed. User-defined pieces are matched first and kept whole.
//   2. split      into UTF-8 characters (user-defined pieces stay one frozen symbol).
//   3. merge      repeatedly the adjacent pair whose concatenation is a piece with the
//                 highest score (leftmost on ties): a priority queue of candidate pairs over
//                 a doubly linked list of symbols, O(n log n).
//   4. output     each symbol's id; an UNUSED piece is split back into the pair that formed
//                 it; a symbol outside the vocabulary becomes its `<0xNN>` byte pieces
//                 (byte fallback), or one `<unk>` for a whole run of them.
//
// Control pieces ("<s>", "</s>") are never produced from text: "<s>" typed by a user is
// the characters '<', 's', '>'. BOS/EOS are added only by the flags of `encode`.

import Foundation
import GGUF

/// A SentencePiece BPE tokenizer loaded from a GGUF file or a `tokenizer.model`.
/// Immutable and thread-safe.
public final class SentencePieceTokenizer: Sendable {
    /// The validated vocabulary and settings it was built from.
    public let vocabulary: Vocabulary
    /// The `<unk>` id (the one piece of type UNKNOWN).
    public let unk: Int32
    let table: PieceTable
    /// Byte fallback: the id of `<0xNN>` for each byte, empty when byte fallback is off.
    let byteIDs: [Int32]
    /// For each id, the byte a BYTE piece stands for, or -1.
    let byteValue: [Int16]
    let userDefined: PrefixMatcher?
    let hasUnusedPieces: Bool

    public var vocabSize: Int { vocabulary.pieces.count }
    public var bos: Int32? { vocabulary.bos }
    public var eos: Int32? { vocabulary.eos }
    public var pad: Int32? { vocabulary.pad }

    /// Validates a vocabulary as SentencePiece does when it loads a model.
    public init(vocabulary v: Vocabulary) throws(TokenizerError) {
        let n = v.pieces.count
        guard n > 0 else { throw .emptyVocabulary }
        guard v.scores.count == n else { throw .lengthMismatch(key: "scores", count: v.scores.count, expected: n) }
        guard v.types.count == n else { throw .lengthMismatch(key: "token types", count: v.types.count, expected: n) }
        for (key, id) in [("bos", v.bos), ("eos", v.eos), ("pad", v.pad)] {
            if let id, id < 0 || Int(id) >= n { throw .specialTokenOutOfRange(key: key, id: Int(id), vocabSize: n) }
        }
        table = try PieceTable(v)

        var unk: Int32?
        var byteIDs = [Int32](repeating: -1, count: 256)
        var byteValue = [Int16](repeating: -1, count: n)
        var userPieces: [String] = []
        for (i, type) in v.types.enumerated() {
            switch type {
            case .unknown:
                if let u = unk { throw .multipleUnknownPieces(Int(u), i) }
                unk = Int32(i)
            case .byte:
                guard v.byteFallback else { throw .unexpectedBytePiece(id: i, piece: v.pieces[i]) }
                guard let b = Vocabulary.byteValue(ofPiece: v.pieces[i]) else {
                    throw .invalidBytePiece(id: i, piece: v.pieces[i])
                }
                byteIDs[Int(b)] = Int32(i)
                byteValue[i] = Int16(b)
            case .userDefined: userPieces.append(v.pieces[i])
            case .unused, .normal, .control: break
            }
        }
        guard let unk else { throw .missingUnknownPiece }
        if v.byteFallback {
            let missing = byteIDs.filter { $0 < 0 }.count
            guard missing == 0 else { throw .missingBytePieces(count: missing) }
        }
        self.vocabulary = v
        self.unk = unk
        self.byteIDs = v.byteFallback ? byteIDs : []
        self.byteValue = byteValue
        self.userDefined = userPieces.isEmpty ? nil : PrefixMatcher(userPieces)
        self.hasUnusedPieces = v.types.contains(.unused)
    }

    /// Reads the `tokenizer.ggml.*` keys of a GGUF file.
    public convenience init(gguf: GGUFFile) throws(TokenizerError) {
        try self.init(vocabulary: Vocabulary(gguf: gguf))
    }

    /// Reads a SentencePiece `tokenizer.model` (protobuf).
    public convenience init(modelFile path: String) throws(TokenizerError) {
        let file: MappedFile
        do { file = try MappedFile(path: path) } catch { throw .gguf(error) }
        try self.init(vocabulary: Vocabulary(sentencePieceModel: file.bytes))
    }

    /// Reads a SentencePiece model from memory.
    public convenience init(modelData: [UInt8]) throws(TokenizerError) {
        let v = modelData.withUnsafeBytes { b in
            Result { () throws(TokenizerError) in try Vocabulary(sentencePieceModel: b) }
        }
        try self.init(vocabulary: v.get())
    }

    /// Loads a GGUF file or a `tokenizer.model`, told apart by their first bytes: GGUF
    /// starts with the magic "GGUF"; a SentencePiece model with its first piece (protobuf
    /// field 1, length-delimited: byte 0x0a).
    public static func load(path: String) throws(TokenizerError) -> SentencePieceTokenizer {
        let file: MappedFile
        do { file = try MappedFile(path: path) } catch { throw .gguf(error) }
        let head = Array(file.bytes.prefix(8))
        if head.count >= 4, Array(head[0..<4]) == Array("GGUF".utf8) {
            let gguf: GGUFFile
            do { gguf = try GGUFFile(file: file) } catch { throw .gguf(error) }
            return try SentencePieceTokenizer(gguf: gguf)
        }
        guard head.first == 0x0A else { throw .unrecognizedFormat(path: path, firstBytes: head) }
        return try SentencePieceTokenizer(vocabulary: Vocabulary(sentencePieceModel: file.bytes))
    }

    // MARK: pieces and special tokens

    /// The text of piece `id` ("▁" for spaces, "<0x0A>" for a byte piece), nil outside the vocabulary.
    public func piece(_ id: Int32) -> String? {
        guard id >= 0, Int(id) < vocabSize else { return nil }
        return vocabulary.pieces[Int(id)]
    }

    public func tokenType(_ id: Int32) -> TokenType? {
        guard id >= 0, Int(id) < vocabSize else { return nil }
        return vocabulary.types[Int(id)]
    }

    public func score(_ id: Int32) -> Float? {
        guard id >= 0, Int(id) < vocabSize else { return nil }
        return vocabulary.scores[Int(id)]
    }

    /// SentencePiece `PieceToId`: the id of a piece text, nil when it is not in the vocabulary.
    public func id(ofPiece piece: String) -> Int32? {
        let id = table.id(of: piece)
        return id >= 0 ? id : nil
    }

    /// Ids of the control pieces (BOS, EOS and any others): never produced by `encode` from text.
    public var controlTokens: [Int32] {
        vocabulary.types.indices.filter { vocabulary.types[$0] == .control }.map(Int32.init)
    }

    /// The `tokenizer.ggml.*` GGUF metadata for this tokenizer (`tokenizer.ggml.model` = "llama"),
    /// for a converter to write.
    public var ggufMetadata: [(String, GGUFValue)] {
        let v = vocabulary
        var m: [(String, GGUFValue)] = [
            (TokenizerKey.model, .string("llama")),
            (TokenizerKey.pre, .string("default")),
            (TokenizerKey.tokens, .array(.string, v.pieces.map { .string($0) })),
            (TokenizerKey.scores, .array(.float32, v.scores.map { .float32($0) })),
            (TokenizerKey.tokenType, .array(.int32, v.types.map { .int32($0.rawValue) })),
        ]
        // Ids are validated to lie in 0..<vocabSize.
        if let bos { m.append((TokenizerKey.bos, .uint32(UInt32(bos)))) }
        if let eos { m.append((TokenizerKey.eos, .uint32(UInt32(eos)))) }
        m.append((TokenizerKey.unknown, .uint32(UInt32(unk))))
        if let pad { m.append((TokenizerKey.padding, .uint32(UInt32(pad)))) }
        m.append((TokenizerKey.addBOS, .bool(v.addBOS)))
        m.append((TokenizerKey.addEOS, .bool(v.addEOS)))
        m.append((TokenizerKey.addSpacePrefix, .bool(v.addDummyPrefix)))
        m.append((TokenizerKey.removeExtraWhitespaces, .bool(v.removeExtraWhitespaces)))
        return m
    }

    // MARK: encoding

    /// Token ids of `text`, with BOS first and EOS last when asked for (and the model has them).
    public func encode(_ text: String, addBOS: Bool = true, addEOS: Bool = false) -> [Int32] {
        var out: [Int32] = []
        out.reserveCapacity(text.utf8.count / 3 + 2)
        if addBOS, let bos { out.append(bos) }
        var text = text
        text.withUTF8 { input in
            let normalized = normalize(input)
            normalized.withUnsafeBufferPointer { appendPieces(of: $0, to: &out) }
        }
        if addEOS, let eos { out.append(eos) }
        return out
    }

    /// The piece texts of `encode(text)`, for display.
    public func encodeAsPieces(_ text: String, addBOS: Bool = false, addEOS: Bool = false) -> [String] {
        encode(text, addBOS: addBOS, addEOS: addEOS).map { piece($0) ?? "" }
    }

    static let spaceSymbol: [UInt8] = [0xE2, 0x96, 0x81]  // "▁" U+2581

    /// The length of the UTF-8 character that starts with byte `b` (SentencePiece `OneCharLen`).
    @inline(__always)
    static func oneCharLength(_ b: UInt8) -> Int {
        switch b >> 4 {
        case 0xC, 0xD: return 2
        case 0xE: return 3
        case 0xF: return 4
        default: return 1
        }
    }

    /// The length of the next normalization unit at `p[0..<n]`: a user-defined piece, else one
    /// character. The input is valid UTF-8 (a Swift String).
    @inline(__always)
    private func unitLength(_ p: UnsafePointer<UInt8>, _ n: Int) -> (length: Int, userDefined: Bool) {
        if let userDefined {
            let m = userDefined.longestMatch(p, n)
            if m > 0 { return (m, true) }
        }
        return (min(n, Self.oneCharLength(p[0])), false)
    }

    /// SentencePiece `Normalizer::Normalize` with identity rules.
    func normalize(_ input: UnsafeBufferPointer<UInt8>) -> [UInt8] {
        guard var p = input.baseAddress, !input.isEmpty else { return [] }
        var n = input.count
        let removeExtra = vocabulary.removeExtraWhitespaces
        if removeExtra {
            // Leading spaces go.
            while n > 0 {
                let u = unitLength(p, n)
                guard u.length == 1, p[0] == 0x20 else { break }
                p += 1
                n -= 1
            }
        }
        if n == 0 { return [] }

        var out: [UInt8] = []
        out.reserveCapacity(n + n / 2 + 3)
        if vocabulary.addDummyPrefix { out.append(contentsOf: Self.spaceSymbol) }
        var isPrevSpace = removeExtra
        while n > 0 {
            let u = unitLength(p, n)
            var s = 0
            // With remove_extra_whitespaces, spaces after a space go.
            while isPrevSpace && s < u.length && p[s] == 0x20 { s += 1 }
            if s < u.length {
                for i in s..<u.length {
                    if p[i] == 0x20 { out.append(contentsOf: Self.spaceSymbol) } else { out.append(p[i]) }
                }
                isPrevSpace = p[u.length - 1] == 0x20
            }
            p += u.length
            n -= u.length
            if !removeExtra { isPrevSpace = false }
        }
        if removeExtra {
            // Trailing "▁" go (including ones the input spelled literally, as SentencePiece does).
            while out.count >= 3, out[out.count - 3] == 0xE2, out[out.count - 2] == 0x96, out[out.count - 1] == 0x81 {
                out.removeLast(3)
            }
        }
        return out
    }

    /// One symbol of the merge list: a byte range of the normalized text.
    private struct Symbol {
        var start: Int32
        var length: Int32
        var prev: Int32  // -1 at the start
        var next: Int32  // -1 at the end
        var frozen: Bool  // a user-defined piece: never merged
    }

    /// A candidate merge of symbols `left` and `right` into a piece with `score`.
    private struct Candidate {
        var score: Float
        var left: Int32
        var right: Int32
        /// Byte length of the merged piece: a stale candidate no longer matches it.
        var length: Int32

        /// Higher score first; on ties, the leftmost (SentencePiece `SymbolPairComparator`).
        @inline(__always)
        func precedes(_ o: Candidate) -> Bool { score > o.score || (score == o.score && left < o.left) }
    }

    /// A binary max-heap of candidates.
    private struct Agenda {
        var items: [Candidate] = []

        mutating func push(_ c: Candidate) {
            items.append(c)
            items.withUnsafeMutableBufferPointer { h in
                var i = h.count - 1
                while i > 0 {
                    let parent = (i - 1) / 2
                    guard c.precedes(h[parent]) else { break }
                    h[i] = h[parent]
                    i = parent
                }
                h[i] = c
            }
        }

        mutating func pop() -> Candidate? {
            guard let last = items.popLast() else { return nil }
            if items.isEmpty { return last }
            return items.withUnsafeMutableBufferPointer { h in
                let top = h[0]
                let n = h.count
                var i = 0
                while true {
                    var child = 2 * i + 1
                    if child >= n { break }
                    if child + 1 < n && h[child + 1].precedes(h[child]) { child += 1 }
                    guard h[child].precedes(last) else { break }
                    h[i] = h[child]
                    i = child
                }
                h[i] = last
                return top
            }
        }
    }

    /// BPE over normalized bytes (SentencePiece `bpe::Model::Encode`), then byte fallback.
    private func appendPieces(of text: UnsafeBufferPointer<UInt8>, to out: inout [Int32]) {
        guard let base = text.baseAddress, !text.isEmpty else { return }
        let table = self.table

        // 2. Split into characters.
        var symbols: [Symbol] = []
        symbols.reserveCapacity(text.count)
        var pos = 0
        while pos < text.count {
            let u = unitLength(base + pos, text.count - pos)
            let i = Int32(symbols.count)
            symbols.append(Symbol(start: Int32(pos), length: Int32(u.length), prev: i - 1, next: i + 1, frozen: u.userDefined))
            pos += u.length
        }
        symbols[symbols.count - 1].next = -1

        // Where merges produced an UNUSED piece: its id → the two ranges it was made of
        // (SentencePiece `rev_merge`, last writer wins).
        var splits: [Int32: (Int32, Int32, Int32, Int32)] = [:]
        var agenda = Agenda()
        agenda.items.reserveCapacity(symbols.count)

        symbols.withUnsafeMutableBufferPointer { sym in
            func addCandidate(_ left: Int32, _ right: Int32) {
                guard left >= 0, right >= 0 else { return }
                let l = sym[Int(left)], r = sym[Int(right)]
                guard !l.frozen, !r.frozen else { return }
                let length = Int(l.length + r.length)
                let id = table.mergeableID(base + Int(l.start), length)
                guard id >= 0 else { return }
                agenda.push(Candidate(score: table.score[Int(id)], left: left, right: right, length: Int32(length)))
                if hasUnusedPieces, table.type[Int(id)] == .unused {
                    splits[id] = (l.start, l.length, r.start, r.length)
                }
            }

            // 3. Merge, best pair first.
            for i in 1..<sym.count { addCandidate(Int32(i - 1), Int32(i)) }
            while let top = agenda.pop() {
                let l = Int(top.left), r = Int(top.right)
                // Stale: one side was merged away, or grew.
                guard sym[l].length > 0, sym[r].length > 0, sym[l].length + sym[r].length == top.length else { continue }
                sym[l].length = top.length
                sym[l].next = sym[r].next
                if sym[r].next >= 0 { sym[Int(sym[r].next)].prev = top.left }
                sym[r].length = 0
                addCandidate(sym[l].prev, top.left)
                addCandidate(top.left, sym[l].next)
            }
        }

        // 4. Output.
        var previousWasUnknown = false
        func emit(_ start: Int32, _ length: Int32) {
            let p = base + Int(start)
            var id = table.id(p, Int(length))
            if id >= 0, table.type[Int(id)] == .unused, let s = splits[id] {
                emit(s.0, s.1)
                emit(s.2, s.3)
                return
            }
            if id < 0 { id = unk }
            let isUnknown = table.type[Int(id)] == .unknown
            if isUnknown && !byteIDs.isEmpty {
                for i in 0..<Int(length) { out.append(byteIDs[Int(p[i])]) }
            } else if !(isUnknown && previousWasUnknown) {
                // A run of unknown pieces becomes one <unk>.
                out.append(id)
            }
            previousWasUnknown = isUnknown
        }
        var i: Int32 = 0
        while i >= 0 {
            emit(symbols[Int(i)].start, symbols[Int(i)].length)
            i = symbols[Int(i)].next
        }
    }
}
