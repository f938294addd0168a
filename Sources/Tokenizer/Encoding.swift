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
//
// Speed: piece lookups hash the bytes of the normalized text in place (no Strings), and
// merges are looked up by the ids of the two halves; when no piece has a "▁" after
// another character (LLaMA's vocabularies), no merge can cross the start of a word, so
// step 3 runs word by word with a small queue.

extension SentencePieceTokenizer {
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

    /// The next unit at `p[0..<n]`: a user-defined piece (longest match), else one character.
    @inline(__always)
    private func unitLength(_ p: UnsafePointer<UInt8>, _ n: Int) -> (length: Int, userDefined: Bool) {
        if let userDefined {
            let m = userDefined.longestMatch(p, n)
            if m > 0 { return (m, true) }
        }
        return (min(n, Self.oneCharLength(p[0])), false)
    }

    /// SentencePiece `Normalizer::Normalize` with identity rules (the input is valid UTF-8).
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

        return [UInt8](unsafeUninitializedCapacity: 3 * n + 3) { out, count in
            var o = 0
            if vocabulary.addDummyPrefix {
                out[0] = 0xE2; out[1] = 0x96; out[2] = 0x81
                o = 3
            }
            var isPrevSpace = removeExtra
            while n > 0 {
                let u = unitLength(p, n)
                var s = 0
                // With remove_extra_whitespaces, spaces after a space go.
                while isPrevSpace && s < u.length && p[s] == 0x20 { s += 1 }
                if s < u.length {
                    for i in s..<u.length {
                        if p[i] == 0x20 {
                            out[o] = 0xE2; out[o + 1] = 0x96; out[o + 2] = 0x81
                            o += 3
                        } else {
                            out[o] = p[i]
                            o += 1
                        }
                    }
                    isPrevSpace = p[u.length - 1] == 0x20
                }
                p += u.length
                n -= u.length
                if !removeExtra { isPrevSpace = false }
            }
            if removeExtra {
                // Trailing "▁" go (including ones the input spelled, as SentencePiece does).
                while o >= 3, out[o - 3] == 0xE2, out[o - 2] == 0x96, out[o - 1] == 0x81 { o -= 3 }
            }
            count = o
        }
    }

    /// Steps 2–4 over normalized bytes (SentencePiece `bpe::Model::Encode`, then byte fallback).
    func appendPieces(of text: UnsafeBufferPointer<UInt8>, to out: inout [Int32]) {
        guard let base = text.baseAddress, !text.isEmpty else { return }

        // 2. Split into characters (and user-defined pieces).
        let symbols = UnsafeMutablePointer<Symbol>.allocate(capacity: text.count)
        defer { symbols.deallocate() }
        var count = 0
        var pos = 0
        while pos < text.count {
            let p = base + pos
            let u = unitLength(p, text.count - pos)
            let id = u.length == 1 && p[0] < 0x80 ? table.asciiID[Int(p[0])] : table.mergeableID(p, u.length)
            symbols[count] = Symbol(start: Int32(pos), length: Int32(u.length), prev: Int32(count - 1),
                                    next: Int32(count + 1), id: id, frozen: u.userDefined)
            count += 1
            pos += u.length
        }

        // 3. Merge, segment by segment.
        var bpe = BPE(table: table, merges: merges, text: base, symbols: symbols, trackUnused: hasUnusedPieces)
        defer { bpe.deallocate() }
        @inline(__always) func isSpace(_ i: Int) -> Bool {
            let s = symbols[i]
            return s.length == 3 && base[Int(s.start)] == 0xE2 && base[Int(s.start) + 1] == 0x96 && base[Int(s.start) + 2] == 0x81
        }
        var segments: [Int32] = []  // the first symbol of each
        var first = 0
        while first < count {
            var end = count
            if mergesStopAtSpaces {
                end = first + 1
                while end < count && !(isSpace(end) && !isSpace(end - 1)) { end += 1 }
            }
            bpe.merge(first, end)
            segments.append(Int32(first))
            first = end
        }

        // 4. Output, once all is merged: UNUSED pieces split by the last merge recorded
        // anywhere in the text, as in SentencePiece.
        var previousWasUnknown = false
        for first in segments {
            var i = first
            while i >= 0 {
                let s = symbols[Int(i)]
                let id = s.id >= 0 ? table.outputID[Int(s.id)] : table.id(base + Int(s.start), Int(s.length))
                emit(id, s.start, s.length, base, bpe.splits, &out, &previousWasUnknown)
                i = s.next
            }
        }
    }

    /// Appends the id of one final symbol (`id` = SentencePiece `PieceToId` of its bytes, or
    /// -1): an UNUSED piece split back into its parts, a symbol outside the vocabulary as
    /// byte pieces or one <unk> per run.
    private func emit(_ id: Int32, _ start: Int32, _ length: Int32, _ text: UnsafePointer<UInt8>,
                      _ splits: [Int32: (Int32, Int32, Int32, Int32)],
                      _ out: inout [Int32], _ previousWasUnknown: inout Bool) {
        let p = text + Int(start)
        var id = id
        if id >= 0, hasUnusedPieces, table.type[Int(id)] == .unused, let s = splits[id] {
            emit(table.id(text + Int(s.0), Int(s.1)), s.0, s.1, text, splits, &out, &previousWasUnknown)
            emit(table.id(text + Int(s.2), Int(s.3)), s.2, s.3, text, splits, &out, &previousWasUnknown)
            return
        }
        if id < 0 { id = unk }
        let isUnknown = table.type[Int(id)] == .unknown
        if isUnknown && !byteIDs.isEmpty {
            for i in 0..<Int(length) { out.append(byteIDs[Int(p[i])]) }
        } else if !(isUnknown && previousWasUnknown) {
            out.append(id)
        }
        previousWasUnknown = isUnknown
    }
}

/// One symbol of the merge list: a byte range of the normalized text.
struct Symbol {
    var start: Int32
    /// 0 once merged into its left neighbour.
    var length: Int32
    var prev: Int32  // -1 at the start of the segment
    var next: Int32  // -1 at its end
    /// The mergeable piece these bytes are, or -1 (a character outside the vocabulary).
    var id: Int32
    var frozen: Bool  // a user-defined piece: never merged
}

/// A candidate merge of symbols `left` and `right` into a piece with `score`.
struct Candidate {
    var score: Float
    var left: Int32
    var right: Int32
    /// Byte length of the merged piece: a candidate whose sides changed no longer matches.
    var length: Int32
    /// The merged piece.
    var id: Int32

    /// Higher score first; on ties, the leftmost (SentencePiece `SymbolPairComparator`).
    @inline(__always)
    func precedes(_ o: Candidate) -> Bool { score > o.score || (score == o.score && left < o.left) }
}

/// The merge step over one segment of symbols: a binary max-heap of candidates in raw
/// memory, reused across segments.
private struct BPE {
    let table: PieceTable
    let merges: MergeTable?
    let text: UnsafePointer<UInt8>
    let symbols: UnsafeMutablePointer<Symbol>
    let trackUnused: Bool
    private var heap: UnsafeMutablePointer<Candidate>
    private var capacity = 64
    private var heapCount = 0
    /// Where merges produced an UNUSED piece: its id → the ranges it was made of
    /// (SentencePiece `rev_merge`: the last one recorded wins).
    private(set) var splits: [Int32: (Int32, Int32, Int32, Int32)] = [:]

    init(table: PieceTable, merges: MergeTable?, text: UnsafePointer<UInt8>, symbols: UnsafeMutablePointer<Symbol>,
         trackUnused: Bool) {
        self.table = table
        self.merges = merges
        self.text = text
        self.symbols = symbols
        self.trackUnused = trackUnused
        heap = .allocate(capacity: capacity)
    }

    func deallocate() { heap.deallocate() }

    /// Merges symbols `first ..< end` until no adjacent pair forms a piece.
    mutating func merge(_ first: Int, _ end: Int) {
        symbols[first].prev = -1
        symbols[end - 1].next = -1
        // Each merge adds at most two candidates to the initial end - first - 1.
        let needed = 3 * (end - first)
        if needed > capacity {
            heap.deallocate()
            capacity = needed
            heap = .allocate(capacity: capacity)
        }
        heapCount = 0
        for i in (first + 1)..<end { addCandidate(Int32(i - 1), Int32(i)) }
        while heapCount > 0 {
            let top = pop()
            let l = Int(top.left), r = Int(top.right)
            // Stale: one side was merged away, or grew.
            guard symbols[l].length > 0, symbols[r].length > 0,
                  symbols[l].length + symbols[r].length == top.length else { continue }
            symbols[l].length = top.length
            symbols[l].id = top.id
            symbols[l].next = symbols[r].next
            if symbols[r].next >= 0 { symbols[Int(symbols[r].next)].prev = top.left }
            symbols[r].length = 0
            addCandidate(symbols[l].prev, top.left)
            addCandidate(top.left, symbols[l].next)
        }
    }

    @inline(__always)
    private mutating func addCandidate(_ left: Int32, _ right: Int32) {
        guard left >= 0, right >= 0 else { return }
        let l = symbols[Int(left)], r = symbols[Int(right)]
        guard !l.frozen, !r.frozen else { return }
        let length = Int(l.length + r.length)
        let id: Int32
        if let merges, l.id >= 0, r.id >= 0 {
            id = merges.merged(l.id, r.id)
        } else {
            id = table.mergeableID(text + Int(l.start), length)
        }
        guard id >= 0 else { return }
        push(Candidate(score: table.score[Int(id)], left: left, right: right, length: Int32(length), id: id))
        if trackUnused, table.type[Int(id)] == .unused {
            splits[id] = (l.start, l.length, r.start, r.length)
        }
    }

    @inline(__always)
    private mutating func push(_ c: Candidate) {
        var i = heapCount
        heapCount += 1
        while i > 0 {
            let parent = (i - 1) / 2
            guard c.precedes(heap[parent]) else { break }
            heap[i] = heap[parent]
            i = parent
        }
        heap[i] = c
    }

    @inline(__always)
    private mutating func pop() -> Candidate {
        let top = heap[0]
        heapCount -= 1
        let last = heap[heapCount]
        let n = heapCount
        var i = 0
        while true {
            var child = 2 * i + 1
            if child >= n { break }
            if child + 1 < n && heap[child + 1].precedes(heap[child]) { child += 1 }
            guard heap[child].precedes(last) else { break }
            heap[i] = heap[child]
            i = child
        }
        if n > 0 { heap[i] = last }
        return top
    }
}
