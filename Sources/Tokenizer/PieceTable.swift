// The vocabulary laid out for the encoder's inner loop: every piece's UTF-8 bytes in one
// buffer and an open-addressing hash index from piece bytes to ids (no Strings), and a
// table of merges keyed by the ids of the two halves, so that the merge loop usually
// probes once per candidate pair instead of hashing and comparing bytes.

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Immutable, raw-memory tables of one vocabulary; freed in `deinit`.
final class PieceTable: @unchecked Sendable {
    /// One hash slot. SentencePiece keeps two maps: `pieces_` (normal, user-defined and
    /// unused pieces: what merges may produce) and `reserved_id_map_` (unknown, control,
    /// byte). A slot holds the id from each map for one distinct byte string.
    struct Slot {
        var hash: UInt32
        /// Id in the merge map, or -1.
        var mergeable: Int32
        /// Id in the reserved map, or -1.
        var reserved: Int32
        var isEmpty: Bool { mergeable < 0 && reserved < 0 }
    }

    let count: Int
    /// All piece bytes, piece `i` at `text[start[i] ..< start[i + 1]]`.
    let text: UnsafeMutablePointer<UInt8>
    let start: UnsafeMutablePointer<Int32>  // (count + 1)
    let score: UnsafeMutablePointer<Float>  // (count)
    let type: UnsafeMutablePointer<TokenType>  // (count)
    private let slots: UnsafeMutablePointer<Slot>  // (mask + 1), a power of two ≥ 2 × count
    private let mask: Int
    /// The mergeable id of each one-byte character (ASCII), or -1.
    let asciiID: UnsafeMutablePointer<Int32>  // (128)
    /// For a mergeable id, the id SentencePiece outputs for its bytes (`PieceToId` looks in
    /// the reserved map first, so a reserved piece with the same bytes wins).
    let outputID: UnsafeMutablePointer<Int32>  // (count)

    /// Builds the tables; throws on an empty or duplicated piece.
    init(_ v: Vocabulary) throws(TokenizerError) {
        count = v.pieces.count
        let totalBytes = v.pieces.reduce(0) { $0 + $1.utf8.count }
        text = .allocate(capacity: max(totalBytes, 1))
        start = .allocate(capacity: count + 1)
        score = .allocate(capacity: max(count, 1))
        type = .allocate(capacity: max(count, 1))
        var capacity = 16
        while capacity < 2 * count { capacity <<= 1 }
        mask = capacity - 1
        slots = .allocate(capacity: capacity)
        slots.initialize(repeating: Slot(hash: 0, mergeable: -1, reserved: -1), count: capacity)
        asciiID = .allocate(capacity: 128)
        outputID = .allocate(capacity: max(count, 1))

        var offset = 0
        for (i, piece) in v.pieces.enumerated() {
            start[i] = Int32(offset)
            for b in piece.utf8 {
                text[offset] = b
                offset += 1
            }
            score[i] = v.scores[i]
            type[i] = v.types[i]
        }
        start[count] = Int32(offset)

        for i in 0..<count {
            let s = Int(start[i]), n = Int(start[i + 1]) - s
            guard n > 0 else { throw .emptyPiece(id: i) }
            let isMergeable = type[i] == .normal || type[i] == .userDefined || type[i] == .unused
            let slot = insertionSlot(text + s, n)
            if isMergeable {
                if slots[slot].mergeable >= 0 {
                    throw .duplicatePiece(id: i, firstID: Int(slots[slot].mergeable), piece: v.pieces[i])
                }
                slots[slot].mergeable = Int32(i)
            } else {
                if slots[slot].reserved >= 0 {
                    throw .duplicatePiece(id: i, firstID: Int(slots[slot].reserved), piece: v.pieces[i])
                }
                slots[slot].reserved = Int32(i)
            }
        }
        for i in 0..<count { outputID[i] = id(text + Int(start[i]), Int(start[i + 1] - start[i])) }
        for b in 0..<128 {
            var byte = UInt8(b)
            asciiID[b] = mergeableID(&byte, 1)
        }
    }

    deinit {
        text.deallocate()
        start.deallocate()
        score.deallocate()
        type.deallocate()
        slots.deallocate()
        asciiID.deallocate()
        outputID.deallocate()
    }

    /// A polynomial hash of the bytes (each byte plus one is a digit in base `hashBase`,
    /// modulo 2^64), so that the hash of a piece's suffix follows from the piece's and its
    /// prefix's hashes in O(1) (`suffixHash`); `slotHash` mixes it for the index.
    @inline(__always)
    static func hash(_ p: UnsafePointer<UInt8>, _ n: Int) -> UInt64 {
        var h: UInt64 = 0
        for i in 0..<n { h = hashStep(h, p[i]) }
        return h
    }

    /// Odd, so that it has an inverse modulo 2^64 (`hashBaseInverse`).
    static let hashBase: UInt64 = 0x100_0000_01B3
    /// hashBase × hashBaseInverse ≡ 1 (mod 2^64), by Newton's iteration (each step
    /// doubles the correct low bits; an odd x is its own inverse modulo 8).
    static let hashBaseInverse: UInt64 = {
        var x = hashBase
        for _ in 0..<5 { x = x &* (2 &- hashBase &* x) }
        return x
    }()

    /// The hash of some bytes followed by `b`, from the hash `h` of those bytes.
    @inline(__always)
    static func hashStep(_ h: UInt64, _ b: UInt8) -> UInt64 { h &* hashBase &+ UInt64(b) &+ 1 }

    /// The hash of the last `m` bytes of a string whose hash is `whole`, given the hash
    /// `prefix` of the bytes before them and `power` = hashBase^m.
    @inline(__always)
    static func suffixHash(whole: UInt64, prefix: UInt64, power: UInt64) -> UInt64 { whole &- prefix &* power }

    /// What a slot stores and where probing starts: the polynomial hash mixed (its low
    /// bits alone depend on few of the input's bits).
    @inline(__always)
    static func slotHash(_ h: UInt64) -> UInt32 {
        let m = (h ^ (h >> 29)) &* 0xBF58_476D_1CE4_E5B9
        return UInt32(truncatingIfNeeded: m >> 32)
    }

    @inline(__always)
    private func equals(_ slot: Slot, _ p: UnsafePointer<UInt8>, _ n: Int) -> Bool {
        let id = Int(slot.mergeable >= 0 ? slot.mergeable : slot.reserved)
        let s = Int(start[id])
        guard Int(start[id + 1]) - s == n else { return false }
        let q = text + s
        // Pieces are mostly a few bytes (a call costs more there); long ones go to memcmp.
        guard n > 16 else {
            for i in 0..<n where p[i] != q[i] { return false }
            return true
        }
        return memcmp(p, q, n) == 0
    }

    /// The slot holding these bytes, or -1.
    @inline(__always)
    private func find(_ p: UnsafePointer<UInt8>, _ n: Int, hash: UInt64? = nil) -> Int {
        let h = Self.slotHash(hash ?? Self.hash(p, n))
        var i = Int(h) & mask
        while true {
            let s = slots[i]
            if s.isEmpty { return -1 }
            if s.hash == h && equals(s, p, n) { return i }
            i = (i + 1) & mask
        }
    }

    private func insertionSlot(_ p: UnsafePointer<UInt8>, _ n: Int) -> Int {
        let h = Self.slotHash(Self.hash(p, n))
        var i = Int(h) & mask
        while !slots[i].isEmpty && !(slots[i].hash == h && equals(slots[i], p, n)) { i = (i + 1) & mask }
        slots[i].hash = h
        return i
    }

    /// The id merges may produce for these bytes (SentencePiece `pieces_.find`), or -1.
    @inline(__always)
    func mergeableID(_ p: UnsafePointer<UInt8>, _ n: Int, hash: UInt64? = nil) -> Int32 {
        let i = find(p, n, hash: hash)
        return i < 0 ? -1 : slots[i].mergeable
    }

    /// SentencePiece `PieceToId`: the reserved map first, then the merge map, else -1.
    func id(_ p: UnsafePointer<UInt8>, _ n: Int) -> Int32 {
        let i = find(p, n)
        if i < 0 { return -1 }
        return slots[i].reserved >= 0 ? slots[i].reserved : slots[i].mergeable
    }

    func id(of piece: String) -> Int32 {
        var piece = piece
        return piece.withUTF8 { buf in
            guard let base = buf.baseAddress else { return -1 }
            return id(base, buf.count)
        }
    }

    /// The bytes of piece `id` (valid while this table lives).
    @inline(__always)
    func bytes(of id: Int) -> UnsafeBufferPointer<UInt8> {
        UnsafeBufferPointer(start: text + Int(start[id]), count: Int(start[id + 1] - start[id]))
    }
}

/// Merges by piece ids: (left id, right id) → the mergeable piece that is their
/// concatenation, for every mergeable piece that splits at a character boundary into two
/// mergeable pieces. Exactly the merges a byte lookup would find when both symbols are
/// mergeable pieces; symbols that are not (characters outside the vocabulary) fall back to
/// `PieceTable.mergeableID`. Entries are 8 bytes (two 16-bit ids and the result) so the
/// table stays in cache: vocabularies of 65,535 pieces or more do without it.
final class MergeTable: @unchecked Sendable {
    struct Entry {
        /// left << 16 | right, or `empty`.
        var key: UInt32
        var merged: Int32
    }
    private static let empty = UInt32.max
    private let entries: UnsafeMutablePointer<Entry>  // (mask + 1)
    private let mask: Int
    private let shift: UInt32

    /// nil when ids do not fit in 16 bits.
    init?(_ t: PieceTable) {
        guard t.count < 0xFFFF else { return nil }
        var pairs: [Entry] = []
        for c in 0..<t.count {
            let piece = t.bytes(of: c)
            guard let p = piece.baseAddress else { continue }
            guard t.type[c] == .normal || t.type[c] == .userDefined || t.type[c] == .unused else { continue }
            // The prefix's hash grows a byte at a time and the suffix's follows from it and
            // the whole piece's (`suffixHash`), so a split costs a probe, plus a comparison
            // (memcmp) of each half that is a piece: O(L) per piece plus O(L) for each of its
            // prefixes that is itself a piece (a file crafted from nested pieces, a, aa, aaa,
            // …, 1.9 MB, took 8 s to load when each suffix was hashed byte by byte).
            let whole = PieceTable.hash(p, piece.count)
            var power: UInt64 = 1   // hashBase^(piece.count - k), from hashBase^count down
            for _ in 0..<piece.count { power = power &* PieceTable.hashBase }
            var h: UInt64 = 0
            for k in 1..<max(piece.count, 1) {
                h = PieceTable.hashStep(h, piece[k - 1])
                power = power &* PieceTable.hashBaseInverse
                guard piece[k] & 0xC0 != 0x80 else { continue }
                let a = t.mergeableID(p, k, hash: h)
                guard a >= 0 else { continue }
                let b = t.mergeableID(p + k, piece.count - k,
                                      hash: PieceTable.suffixHash(whole: whole, prefix: h, power: power))
                if b >= 0 { pairs.append(Entry(key: UInt32(a) << 16 | UInt32(b), merged: Int32(c))) }
            }
        }
        var bits = 4
        while (1 << bits) < 2 * pairs.count { bits += 1 }
        mask = (1 << bits) - 1
        shift = UInt32(32 - bits)
        entries = .allocate(capacity: mask + 1)
        entries.initialize(repeating: Entry(key: Self.empty, merged: -1), count: mask + 1)
        for e in pairs {
            var i = slot(e.key)
            while entries[i].key != Self.empty && entries[i].key != e.key { i = (i + 1) & mask }
            entries[i] = e
        }
    }

    deinit { entries.deallocate() }

    @inline(__always)
    private func slot(_ key: UInt32) -> Int { Int((key &* 0x9E37_79B9) >> shift) }

    /// The mergeable piece that `left` followed by `right` spells, or -1.
    @inline(__always)
    func merged(_ left: Int32, _ right: Int32) -> Int32 {
        let key = UInt32(truncatingIfNeeded: left) << 16 | UInt32(truncatingIfNeeded: right)
        var i = slot(key)
        while true {
            let e = entries[i]
            if e.key == key { return e.merged }
            if e.key == Self.empty { return -1 }
            i = (i + 1) & mask
        }
    }
}

/// Longest-prefix matching of user-defined pieces (SentencePiece `PrefixMatcher`): a byte trie.
struct PrefixMatcher: Sendable {
    /// Edges keyed by `node << 8 | byte`.
    private var edges: [UInt32: UInt32] = [:]
    private var terminal: [Bool] = [false]
    private var firstBytes = [Bool](repeating: false, count: 256)

    init(_ pieces: [String]) {
        for piece in pieces {
            var node: UInt32 = 0
            for b in piece.utf8 {
                let key = node << 8 | UInt32(b)
                if let next = edges[key] {
                    node = next
                } else {
                    let next = UInt32(terminal.count)
                    terminal.append(false)
                    edges[key] = next
                    node = next
                }
            }
            terminal[Int(node)] = true
            if let b = piece.utf8.first { firstBytes[Int(b)] = true }
        }
    }

    /// The length of the longest user-defined piece that `p[0..<n]` starts with, or 0.
    func longestMatch(_ p: UnsafePointer<UInt8>, _ n: Int) -> Int {
        guard n > 0, firstBytes[Int(p[0])] else { return 0 }
        var node: UInt32 = 0
        var longest = 0
        for i in 0..<n {
            guard let next = edges[node << 8 | UInt32(p[i])] else { break }
            node = next
            if terminal[Int(node)] { longest = i + 1 }
        }
        return longest
    }
}
