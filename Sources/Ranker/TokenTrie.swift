/// A trie over token sequences, for constrained decoding: from any node only the
/// tokens that continue some remaining sequence are allowed, and each leaf names
/// the candidates whose full sequence ends there.
struct TokenTrie {
    struct Node {
        var children: [Int32: Int] = [:]   // token -> node index
        var ends: [Int] = []               // candidates whose sequence ends here
        var live = 0                       // remaining candidates below (and at) this node
    }

    private(set) var nodes = [Node()]

    init(_ sequences: [[Int32]]) {
        for (c, seq) in sequences.enumerated() where !seq.isEmpty { insert(seq, candidate: c) }
    }

    private mutating func insert(_ seq: [Int32], candidate: Int) {
        var n = 0
        nodes[0].live += 1
        for t in seq {
            if let next = nodes[n].children[t] {
                n = next
            } else {
                nodes.append(Node())
                nodes[n].children[t] = nodes.count - 1
                n = nodes.count - 1
            }
            nodes[n].live += 1
        }
        nodes[n].ends.append(candidate)
    }

    static let root = 0

    /// Tokens allowed after `node`, restricted to branches with remaining candidates.
    func allowed(from node: Int) -> [(token: Int32, child: Int)] {
        nodes[node].children.compactMap { nodes[$0.value].live > 0 ? ($0.key, $0.value) : nil }
    }

    /// The first remaining candidate whose sequence ends exactly at `node`.
    func completed(at node: Int) -> Int? { nodes[node].ends.first }

    var remaining: Int { nodes[0].live }

    /// Removes one candidate ending at `node`, walking the path `tokens` from the root.
    mutating func remove(candidate: Int, path tokens: [Int32]) {
        var n = 0
        nodes[0].live -= 1
        for t in tokens {
            guard let next = nodes[n].children[t] else { return }
            n = next
            nodes[n].live -= 1
        }
        nodes[n].ends.removeAll { $0 == candidate }
    }
}
