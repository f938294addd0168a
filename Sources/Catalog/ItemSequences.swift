// Per-user item sequences in time order, as integer item indices in CSR form:
// the shape every builder loop and the evaluator work on (no strings inside loops).

/// User u's items, oldest first, are `items[offsets[u] ..< offsets[u + 1]]`.
public struct ItemSequences: Sendable {
    /// Items are indices in 0..<itemCount (a catalog's order).
    public let itemCount: Int
    public let offsets: [Int]    // (n_users + 1), non-decreasing, offsets[0] == 0
    public let items: [Int32]    // (n_interactions) item indices, oldest → newest within a user

    public var userCount: Int { offsets.count - 1 }
    public var interactionCount: Int { items.count }

    public init(itemCount: Int, offsets: [Int], items: [Int32]) {
        precondition(offsets.first == 0 && offsets.last == items.count, "offsets must span items")
        self.itemCount = itemCount
        self.offsets = offsets
        self.items = items
    }

    /// Builds sequences from plain arrays (tests, tools).
    public init(itemCount: Int, sequences: [[Int32]]) {
        var offsets = [0]
        var items: [Int32] = []
        for s in sequences {
            items.append(contentsOf: s)
            offsets.append(items.count)
        }
        self.init(itemCount: itemCount, offsets: offsets, items: items)
    }

    public func sequence(_ user: Int) -> ArraySlice<Int32> { items[offsets[user]..<offsets[user + 1]] }

    /// Every user's sequence without its last `n` items: the training part of a
    /// leave-one-out split (n = 1 holds out the test item, n = 2 also the validation item).
    /// Users with `n` or fewer items keep nothing.
    public func droppingLast(_ n: Int) -> ItemSequences {
        var newOffsets = [0]
        newOffsets.reserveCapacity(offsets.count)
        var newItems: [Int32] = []
        newItems.reserveCapacity(items.count)
        for u in 0..<userCount {
            let end = max(offsets[u], offsets[u + 1] - n)
            newItems.append(contentsOf: items[offsets[u]..<end])
            newOffsets.append(newItems.count)
        }
        return ItemSequences(itemCount: itemCount, offsets: newOffsets, items: newItems)
    }

    /// Interactions per item (the popularity a catalog stores).
    public func itemCounts() -> [Float] {
        var c = [Float](repeating: 0, count: itemCount)
        for i in items { c[Int(i)] += 1 }
        return c
    }

    /// Groups `log` by user (users in order of first appearance) and orders each
    /// user's interactions by timestamp, ties by their order in the file, never by
    /// item id. Items that `itemIndex` does not know are left out and counted.
    public static func make(from log: InteractionLog, itemCount: Int, itemIndex: (String) -> Int32?)
        -> (sequences: ItemSequences, skippedInteractions: Int, unknownItemIds: Int) {
        // Log item index → catalog index, once per distinct id.
        var map = [Int32](repeating: -1, count: log.itemIds.count)
        var unknownIds = 0
        for (i, id) in log.itemIds.enumerated() {
            if let c = itemIndex(id) { map[i] = c } else { unknownIds += 1 }
        }
        // Counting sort of rows by user keeps file order within a user.
        let nUsers = log.userIds.count
        var offsets = [Int](repeating: 0, count: nUsers + 1)
        for u in log.users { offsets[Int(u) + 1] += 1 }
        for u in 0..<nUsers { offsets[u + 1] += offsets[u] }
        var fill = offsets
        var rows = [Int32](repeating: 0, count: log.count)
        for r in 0..<log.count {
            let u = Int(log.users[r])
            rows[fill[u]] = Int32(r)
            fill[u] += 1
        }
        var outOffsets = [0]
        outOffsets.reserveCapacity(nUsers + 1)
        var outItems: [Int32] = []
        outItems.reserveCapacity(log.count)
        var skipped = 0
        for u in 0..<nUsers {
            var mine = Array(rows[offsets[u]..<offsets[u + 1]])
            // (time, row) is a total order: ties in time fall back to file order.
            mine.sort { a, b in
                let ta = log.times[Int(a)], tb = log.times[Int(b)]
                return ta != tb ? ta < tb : a < b
            }
            for r in mine {
                let c = map[Int(log.items[Int(r)])]
                if c < 0 { skipped += 1 } else { outItems.append(c) }
            }
            outOffsets.append(outItems.count)
        }
        return (ItemSequences(itemCount: itemCount, offsets: outOffsets, items: outItems), skipped, unknownIds)
    }
}
