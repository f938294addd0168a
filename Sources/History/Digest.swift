// The history digest: FNV-1a 64 over an unambiguous byte encoding of the
// ordered (item, kind, value, timestamp) sequence that ranking uses.
//
// Encoding, per interaction, in order (little-endian integers):
//   u32 item byte count, item UTF-8 | u32 kind byte count, kind UTF-8 |
//   u8 0 (no value) or u8 1 + u64 IEEE-754 bits of the value (-0 as +0) |
//   i64 timestamp
// The encoding is injective (every field is framed), so different sequences
// hash different bytes; FNV-1a's per-byte step is a bijection of the state, so
// two encodings of equal length that differ in one byte always differ in digest.
// Interaction ids and profile names are not hashed: the digest describes what
// the ranker sees, so identical histories in two databases have equal digests.

/// A 64-bit digest of a profile's ranking history; written as 16 hex digits.
public struct HistoryDigest: Hashable, Sendable, Codable, CustomStringConvertible {
    public let value: UInt64

    public init(value: UInt64) { self.value = value }

    /// Parses the 16-hex-digit form that `description` writes.
    public init?(hex: String) {
        guard hex.utf8.count == 16, let value = UInt64(hex, radix: 16) else { return nil }
        self.value = value
    }

    /// The digest of `interactions` in the given order.
    public init(of interactions: some Sequence<Interaction>) {
        var hasher = FNV1a64()
        hasher.add(UInt8(1))  // encoding version
        for interaction in interactions {
            hasher.add(string: interaction.item)
            hasher.add(string: interaction.kind.rawValue)
            if let value = interaction.value {
                hasher.add(UInt8(1))
                hasher.add(UInt64((value == 0 ? 0 : value).bitPattern))
            } else {
                hasher.add(UInt8(0))
            }
            hasher.add(UInt64(bitPattern: interaction.timestamp))
        }
        value = hasher.state
    }

    /// This digest extended by `text` (UTF-8, length-framed): e.g. a history and the
    /// profile summary a ranking prompt showed with it.
    public func combined(with text: String) -> HistoryDigest {
        var hasher = FNV1a64()
        hasher.add(UInt8(2))  // a combined digest, not a history encoding
        hasher.add(value)
        hasher.add(string: text)
        return HistoryDigest(value: hasher.state)
    }

    public var description: String {
        let digits = String(value, radix: 16)
        return String(repeating: "0", count: 16 - digits.count) + digits
    }

    public init(from decoder: any Decoder) throws {
        let text = try decoder.singleValueContainer().decode(String.self)
        guard let digest = HistoryDigest(hex: text) else {
            throw DecodingError.dataCorrupted(.init(codingPath: decoder.codingPath,
                                                    debugDescription: "'\(text)' is not a 16-hex-digit history digest"))
        }
        self = digest
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(description)
    }
}

/// FNV-1a, 64-bit (offset basis 0xcbf29ce484222325, prime 0x100000001b3).
struct FNV1a64 {
    private(set) var state: UInt64 = 0xcbf2_9ce4_8422_2325

    mutating func add(_ byte: UInt8) {
        state = (state ^ UInt64(byte)) &* 0x0000_0100_0000_01b3
    }

    mutating func add(_ word: UInt64) {
        for shift in stride(from: 0, to: 64, by: 8) { add(UInt8(truncatingIfNeeded: word >> UInt64(shift))) }
    }

    mutating func add(string: String) {
        let count = UInt32(truncatingIfNeeded: string.utf8.count)
        for shift in stride(from: 0, to: 32, by: 8) { add(UInt8(truncatingIfNeeded: count >> UInt32(shift))) }
        for byte in string.utf8 { add(byte) }
    }
}
