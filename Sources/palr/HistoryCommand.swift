// `palr history`: the viewing-history store from the command line. Thin: it
// parses arguments, calls the History module, and prints.
import ArgumentParser
import Foundation
import FileSafety
import History

struct HistoryCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "history",
        abstract: "Record, import, list, forget and export viewing history.",
        discussion: """
            The database is --db FILE, else $PALR_DB, else $XDG_DATA_HOME/palr/history.sqlite, \
            else ~/.local/share/palr/history.sqlite. Times are Unix seconds.
            """,
        subcommands: [
            Add.self, Import.self, List.self, Forget.self, Stats.self, Check.self, Export.self, Compact.self, Bench.self,
            StressWriter.self,
        ]
    )

    /// Declared here too so that `palr history --db FILE add …` works as well as
    /// `palr history add --db FILE …`.
    @OptionGroup var database: DatabaseOptions
}

// MARK: shared options and output

struct DatabaseOptions: ParsableArguments {
    @Option(help: "History database file (default: $PALR_DB, else $XDG_DATA_HOME/palr/history.sqlite).")
    var db: String?

    /// The database file: --db, else the default location. Subcommands call
    /// it from validate(), so that a missing one is a usage error with their usage.
    func path() throws -> String { try Self.resolve(db) }

    /// `db`, else the default location (`HistoryStore.defaultPath`) from an environment
    /// that must be valid UTF-8; a ValidationError says what is missing or wrong.
    static func resolve(_ db: String?) throws -> String {
        if let db { return db }
        // The environment as bytes: Foundation repairs invalid UTF-8 with U+FFFD, which
        // would put the store at another path (and two such paths in one).
        // Only the variable that decides is checked (the order of HistoryStore.defaultPath).
        for name in ["PALR_DB", "XDG_DATA_HOME", "HOME"] {
            guard let raw = getenv(name), raw.pointee != 0 else { continue }
            guard String(validatingCString: raw) != nil else {
                throw ValidationError("$\(name) is not valid UTF-8; palr takes paths as UTF-8 (or give --db)")
            }
            if name != "XDG_DATA_HOME" || raw.pointee == UInt8(ascii: "/") { break }   // a relative one is skipped
        }
        guard let path = HistoryStore.defaultPath() else {
            let xdg = ProcessInfo.processInfo.environment["XDG_DATA_HOME"].map { "XDG_DATA_HOME is not an absolute path (\($0.debugDescription))" }
            throw ValidationError("no --db given, PALR_DB is not set, \(xdg ?? "XDG_DATA_HOME is not set") and HOME is not set")
        }
        return path
    }

    /// Opens the store for writing; `create` also creates the file and the
    /// default location's folder.
    func open(create: Bool) throws -> HistoryStore {
        try open(create: create) { _ in () }.store
    }

    /// Opens the store as `open(create:)` does with `firstWrite` as its first write: a
    /// store this creates appears with those writes already in it, never empty
    /// (`HistoryStore.open(path:options:firstWrite:)`).
    func open<T>(create: Bool, firstWrite: (HistoryStore) throws -> T) throws -> (store: HistoryStore, result: T) {
        let path = try path()
        // (A bare file name, PALR_DB=h.sqlite, is in the current folder: nothing to create.)
        let folder = (path as NSString).deletingLastPathComponent
        if create && db == nil && !folder.isEmpty {
            do {
                try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
            } catch {
                // Foundation's reason for a file in the way is "error 512": name the file.
                var reason = (error as NSError).localizedFailureReason ?? error.localizedDescription
                var ancestor = folder
                while !ancestor.isEmpty && ancestor != "/" {
                    var isFolder: ObjCBool = false
                    if FileManager.default.fileExists(atPath: ancestor, isDirectory: &isFolder) {
                        if !isFolder.boolValue { reason = "\(ancestor) is not a folder" }
                        break
                    }
                    ancestor = (ancestor as NSString).deletingLastPathComponent
                }
                throw CLIError("cannot create the folder \(folder) for the history database: \(reason)")
            }
        }
        let (store, result) = try HistoryStore.open(path: path, options: .init(createIfMissing: create),
                                                    firstWrite: firstWrite)
        return (noteOpen(store), result)
    }

    /// Opens the store for a command that only reads: read-only when this
    /// process cannot write the file (so a database the user may only read
    /// can still be listed, counted and exported). A file it can write is
    /// opened for writing, so an older schema is upgraded here too (and noted).
    func openForReading() throws -> HistoryStore {
        let path = try path()
        let exists = FileManager.default.fileExists(atPath: path)
        let readOnly = exists && !FileManager.default.isWritableFile(atPath: path)
        return noteOpen(try HistoryStore(path: path, options: .init(createIfMissing: false, readOnly: readOnly)))
    }
}

/// Tells the user on stderr (one line each) when opening `store` upgraded its schema
/// (palr builds that know only the older version refuse the file from now on, and a
/// command that merely lists or counts would otherwise change that silently), and when
/// a full disk made it open the store exclusively (other processes wait meanwhile).
/// Returns the store, so that an open can be wrapped in it.
@discardableResult
func noteOpen(_ store: HistoryStore) -> HistoryStore {
    if store.openedExclusively {
        printErr("note: the disk holding \(store.path) is too full for SQLite's shared-memory file "
            + "(\(store.path)-shm): opened in exclusive mode, so other processes using this store wait until "
            + "this command ends; writes need free space")
    }
    if let upgrade = store.schemaUpgrade {
        // printErr: a message never kills the process (a closed or full stderr).
        printErr("note: upgraded history store \(store.path) from schema version "
            + "\(upgrade.from) to \(upgrade.to) (palr builds that support only versions "
            + "below \(upgrade.to) cannot open it any more)")
    }
    return store
}

/// Prints a value as pretty, key-sorted JSON.
func printJSON(_ value: some Encodable) throws {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
    print(String(decoding: try encoder.encode(value), as: UTF8.self))
}

/// UTC in ISO 8601 ("2024-01-31T09:05:00Z"), as ISO8601DateFormatter writes it, without
/// building a formatter per call (that made `history list` ~115 µs a row).
func isoTime(_ seconds: Int64?) -> String {
    guard let seconds else { return "-" }
    var t = time_t(seconds)
    var parts = tm()
    guard gmtime_r(&t, &parts) != nil else { return String(seconds) }
    func two(_ v: Int32) -> String { v < 10 ? "0\(v)" : String(v) }
    let year = String(parts.tm_year + 1900)
    return String(repeating: "0", count: max(0, 4 - year.count)) + year + "-\(two(parts.tm_mon + 1))-\(two(parts.tm_mday))"
        + "T\(two(parts.tm_hour)):\(two(parts.tm_min)):\(two(parts.tm_sec))Z"
}

extension ExportFormat: ExpressibleByArgument {}

extension InteractionKind: ExpressibleByArgument {
    public init?(argument: String) {
        self.init(rawValue: argument)
    }
}

// MARK: add

extension HistoryCommand {
    struct Add: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Record interactions of one profile (one transaction); prints their ids.")

        @OptionGroup var database: DatabaseOptions
        @Option(help: "Profile name.") var profile: String
        @Option(help: "Interaction kind: view, click, purchase, rating, skip, or your own.") var kind: InteractionKind = .view
        @Option(parsing: .unconditional, help: "Value (rating, watch fraction), in decimal notation.") var value: String?
        @Option(parsing: .unconditional, help: "Unix seconds (default: now).") var time: Int64?
        @Flag(help: "Create the profile if it does not exist.") var createProfile = false
        @Flag(help: "Print JSON.") var json = false
        @Option(help: ArgumentHelp("Also read item ids from this file ('-': standard input; repeatable), one per line, exactly as on the command line (a line's final CR is dropped, empty lines skipped); the bulk path for many ids.",
                                   valueName: "file"))
        var itemsFrom: [String] = []
        @Argument(help: "Catalog item ids.") var items: [String] = []

        func validate() throws {
            _ = try database.path()
            if items.isEmpty && itemsFrom.isEmpty { throw ValidationError("give item ids, or --items-from FILE") }
            if let problem = kind.problem { throw ValidationError(problem) }
            if itemsFrom.filter({ $0 == "-" }).count > 1 { throw ValidationError("--items-from - (standard input) can be given once") }
            if let value, HistoryStore.parseValue(value) == nil {
                throw ValidationError("--value must be a finite number in decimal notation (got \(value.debugDescription))")
            }
            if let time, !(0...HistoryStore.maxTimestamp).contains(time) {
                throw ValidationError("--time must be Unix seconds in 0...\(HistoryStore.maxTimestamp) (got \(time))")
            }
        }

        func run() throws {
            // The ids come first: a file that cannot be read leaves no new database behind.
            var items = self.items
            for source in itemsFrom { items += try readItemList(source) }
            // Without --create-profile a new database could only fail (no profile exists yet),
            // so it is not created.
            let time = self.time ?? Int64(Date().timeIntervalSince1970)
            let value = self.value.flatMap(HistoryStore.parseValue)
            let batch = items.map {
                NewInteraction(profile: profile, item: $0, kind: kind, value: value, timestamp: time)
            }
            // A store this creates appears with the batch in it (a kill leaves none).
            let ids = try database.open(create: createProfile) { try $0.record(batch, createProfiles: createProfile) }
                .result
            if json { try printJSON(["ids": ids]) } else { ids.forEach { print($0) } }
        }

        /// The most an id list may hold (it is read into memory).
        static let maxListBytes = 64 << 20

        /// The ids in `source` ("-": standard input), one per line, each exactly as it
        /// would be given on the command line: a final CR (CRLF files) is dropped and
        /// empty lines are skipped; nothing else is trimmed. Every id is checked here,
        /// so a bad one is named by file and line.
        func readItemList(_ source: String) throws -> [String] {
            let name = source == "-" ? "standard input" : source
            let fd = openInput(source)
            guard fd >= 0 else { throw CLIError(path: name, "cannot read: \(String(cString: strerror(errno)))") }
            defer { close(fd) }
            var info = stat()
            if fstat(fd, &info) == 0 && info.st_mode & S_IFMT == S_IFDIR {
                throw CLIError(path: name, "cannot read: it is a folder")
            }
            let bytes: [UInt8]
            do { bytes = try readFully(fd, limit: Self.maxListBytes) } catch {
                throw CLIError(path: name, "cannot read: \(error.reason)")
            }
            var ids: [String] = []
            var line = 0, start = 0
            // Scanned in place (no slice per line: a list of empty lines costs nothing).
            while start < bytes.count {
                let end = bytes[start...].firstIndex(of: UInt8(ascii: "\n")) ?? bytes.count
                defer { start = end + 1 }
                line += 1
                var text = bytes[start..<end]
                if line == 1 && text.starts(with: [0xef, 0xbb, 0xbf]) { text = text.dropFirst(3) }  // a byte order mark
                if text.last == UInt8(ascii: "\r") { text = text.dropLast() }
                if text.isEmpty { continue }
                guard let id = String(validating: text, as: UTF8.self) else {
                    throw CLIError(path: "\(name):\(line)", "not valid UTF-8")
                }
                if let problem = HistoryStore.problem(itemID: id) { throw CLIError(path: "\(name):\(line)", problem) }
                ids.append(id)
            }
            if ids.isEmpty { throw CLIError(path: name, "no item ids in it") }
            return ids
        }
    }
}

// MARK: import

extension HistoryCommand {
    struct Import: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Import an interaction file, all or nothing.",
            discussion: """
                Formats: udata (MovieLens u.data: user TAB item TAB rating TAB time), dat (ratings.dat: \
                user::item::rating::time), movielens-csv (ratings.csv with header userId,movieId,rating,timestamp), \
                csv (any CSV with a header; name the columns with --profile-column, --item-column, --time-column \
                and optionally --value-column, --kind-column). A malformed line aborts the import and names the \
                line; nothing is written. Import appends and does not apply the retention cap.
                """)

        enum Format: String, ExpressibleByArgument, CaseIterable {
            case udata, dat, movielensCsv = "movielens-csv", csv
        }

        @OptionGroup var database: DatabaseOptions
        @Option(help: "File format.") var format: Format
        @Option(help: "Prefix for every profile name (e.g. ml100k:).") var profilePrefix = ""
        @Option(help: "Kind of every row without a kind column (default: rating for MovieLens, view for csv).")
        var kind: InteractionKind?
        @Option(help: "csv: the profile column.") var profileColumn: String?
        @Option(help: "csv: the item column.") var itemColumn: String?
        @Option(help: "csv: the time column.") var timeColumn: String?
        @Option(help: "csv: the value column (optional).") var valueColumn: String?
        @Option(help: "csv: the kind column (optional).") var kindColumn: String?
        @Option(help: "csv: the field delimiter, one ASCII character or 'tab'.") var delimiter = ","
        @Option(help: "csv: unit of the time column: seconds or milliseconds.") var timeUnit = "seconds"
        @Flag(help: "Print JSON.") var json = false
        @Argument(help: "The file to import.") var file: String

        func importFormat() throws -> ImportFormat {
            switch format {
            case .udata: return .movieLensUData
            case .dat: return .movieLensDat
            case .movielensCsv: return .movieLensCSV
            case .csv:
                guard let profileColumn, let itemColumn, let timeColumn else {
                    throw ValidationError("--format csv needs --profile-column, --item-column and --time-column")
                }
                let separator = delimiter == "tab" ? "\t" : delimiter
                guard separator.utf8.count == 1, let byte = separator.utf8.first else {   // one byte: ASCII
                    throw ValidationError("--delimiter must be one ASCII character or 'tab' (got \(delimiter.debugDescription))")
                }
                guard let unit = TimeUnit(rawValue: timeUnit) else {
                    throw ValidationError("--time-unit must be seconds or milliseconds")
                }
                let mapping = CSVMapping(profileColumn: profileColumn, itemColumn: itemColumn, timeColumn: timeColumn,
                                         valueColumn: valueColumn, kindColumn: kindColumn, delimiter: byte,
                                         timeUnit: unit)
                // A column with two roles, or a delimiter that cannot separate fields.
                if let problem = mapping.problem { throw ValidationError(problem) }
                return .csv(mapping)
            }
        }

        func validate() throws {
            if let problem = kind?.problem { throw ValidationError(problem) }
            _ = try database.path()
            _ = try importFormat()
        }

        func run() throws {
            let options = ImportOptions(format: try importFormat(), profilePrefix: profilePrefix, kind: kind)
            // Opened first: a file that cannot be read must not leave a new, empty
            // database behind (and a FIFO is opened once, by the import itself).
            let start = ContinuousClock.now
            let input = try ImportInput(path: file)
            try input.check(options: options)   // a malformed file leaves no new database either
            // A store this creates appears with the import in it (a kill leaves none).
            let report = try database.open(create: true) { try $0.importInput(input, options: options) }.result
            let seconds = (ContinuousClock.now - start).seconds
            if json {
                try printJSON(report)
                return
            }
            print("imported \(report.interactions) interactions of \(report.profiles) profiles "
                  + "(\(report.newProfiles) new), \(report.newItems) new items, in \(String(format: "%.2f", seconds)) s")
            if !report.profilesOverCap.isEmpty, let cap = report.retentionCap {
                print("note: \(report.profilesOverCap.count) profiles have more than the retention cap of \(cap) "
                      + "interactions; their next write or `palr history compact` keeps only the newest \(cap). "
                      + "Raise it with `palr history compact --retention-cap N` (or --unlimited).")
            }
        }
    }
}

// MARK: list

extension HistoryCommand {
    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "List profiles, or a profile's recent interactions (oldest first) with their digest.")

        @OptionGroup var database: DatabaseOptions
        @Option(help: "Show this profile's interactions.") var profile: String?
        @Option(parsing: .unconditional, help: "With --profile: how many recent interactions (default: 50).") var limit: Int?
        @Option(help: "With --profile: only these kinds (repeatable).") var kind: [InteractionKind] = []
        @Flag(help: "Print JSON.") var json = false

        struct Recent: Encodable {
            var profile: String
            var limit: Int
            var kinds: [String]?
            var digest: HistoryDigest
            var interactions: [Interaction]
        }

        func validate() throws {
            _ = try database.path()
            if let limit, limit < 0 { throw ValidationError("--limit must be at least 0 (got \(limit))") }
            if profile == nil && (limit != nil || !kind.isEmpty) {
                throw ValidationError("--limit and --kind need --profile (without it list prints the profiles)")
            }
            // A name no interaction can have is a mistake; a valid kind nobody used lists nothing.
            if let problem = kind.lazy.compactMap(\.problem).first { throw ValidationError(problem) }
        }

        func run() throws {
            let store = try database.openForReading()
            guard let profile else {
                let profiles = try store.profiles()
                if json { return try printJSON(profiles) }
                print("profile\tinteractions\tfirst\tlast")
                for info in profiles {
                    print("\(info.name)\t\(info.interactions)\t\(isoTime(info.firstTimestamp))\t\(isoTime(info.lastTimestamp))")
                }
                return
            }
            let kinds = kind.isEmpty ? nil : Set(kind)
            let limit = self.limit ?? 50
            let recent = try store.recent(profile: profile, limit: limit, kinds: kinds)
            let digest = HistoryDigest(of: recent)
            if json {
                return try printJSON(Recent(profile: profile, limit: limit, kinds: kinds?.map(\.rawValue).sorted(),
                                            digest: digest, interactions: recent))
            }
            print("id\ttime\tkind\titem\tvalue")
            for interaction in recent {
                let value = interaction.value.map { "\($0)" } ?? ""
                print("\(interaction.id)\t\(isoTime(interaction.timestamp))\t\(interaction.kind)\t\(interaction.item)\t\(value)")
            }
            print("digest \(digest) of \(recent.count) interactions")
        }
    }
}

// MARK: forget

extension HistoryCommand {
    struct Forget: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Remove a profile, or an item from a profile's (or every profile's) history.",
            discussion: """
                --profile P: delete P with its history, cached results and summary. \
                --profile P --item I: remove I from P's history. --item I --all-profiles: from every history. \
                Removing history also drops the cached results and summaries derived from it; deleted bytes are \
                zeroed in the database and the write-ahead log is truncated.
                """)

        @OptionGroup var database: DatabaseOptions
        @Option(help: "Profile name.") var profile: String?
        @Option(help: "Catalog item id.") var item: String?
        @Flag(help: "With --item and no --profile: remove the item from every profile.") var allProfiles = false
        @Flag(help: "Print JSON.") var json = false

        func validate() throws {
            _ = try database.path()
            if profile == nil && item == nil { throw ValidationError("give --profile, --item, or both") }
            if profile == nil && !allProfiles {
                throw ValidationError("--item without --profile removes it from every profile: add --all-profiles")
            }
            if profile != nil && allProfiles { throw ValidationError("--all-profiles goes with --item alone") }
        }

        func run() throws {
            let store = try database.open(create: false)
            let removed: Int
            if let item {
                removed = try store.forget(item: item, profile: profile)
            } else {
                removed = try store.forget(profile: profile ?? "")
            }
            if json { return try printJSON(["removedInteractions": removed]) }
            print("removed \(removed) interactions")
        }
    }
}

// MARK: stats, export, compact

extension HistoryCommand {
    struct Stats: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Counts and sizes of the store.")

        @OptionGroup var database: DatabaseOptions
        @Flag(help: "Print JSON.") var json = false

        func validate() throws {
            _ = try database.path()
        }

        func run() throws {
            let stats = try database.openForReading().stats()
            if json { return try printJSON(stats) }
            let kinds = stats.interactionsByKind.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }
            print("""
                database       \(stats.path) (schema \(stats.schemaVersion))
                size           \(stats.databaseBytes) bytes + \(stats.walBytes) bytes WAL \
                (\(stats.pageCount) pages of \(stats.pageSize), \(stats.freePages) free)
                profiles       \(stats.profiles)
                interactions   \(stats.interactions) (\(kinds.joined(separator: ", ")))
                items          \(stats.items)
                time span      \(isoTime(stats.oldestTimestamp)) … \(isoTime(stats.newestTimestamp))
                largest        \(stats.largestProfile ?? "-") (\(stats.largestProfileInteractions) interactions)
                retention cap  \(stats.retentionCap.map(String.init) ?? "unlimited") \
                (\(stats.profilesOverCap) profiles over it)
                cached results \(stats.cachedRecommendations), summaries \(stats.profileSummaries)
                """)
        }
    }

    struct Check: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Check the whole store (SQLite's integrity and foreign-key checks, the id counter); exit 1 if anything is wrong.",
            discussion: "Reads every page (0.11 s for 100,000 interactions). --repair fixes what can be fixed "
                + "without losing anything (an id counter not above the ids in use), then checks again.")

        @OptionGroup var database: DatabaseOptions
        @Flag(help: "Fix the id counter when it is not above the ids in use.") var repair = false
        @Flag(help: "Print JSON.") var json = false

        struct Report: Encodable {
            var path: String
            var ok: Bool
            var problems: [String]
            var repaired: [String]
        }

        func validate() throws {
            _ = try database.path()
        }

        func run() throws {
            let store = repair ? try database.open(create: false) : try database.openForReading()
            var repaired: [String] = []
            // Only a sound file is written to: never a damaged b-tree.
            if repair, try store.integrityCheck() == ["ok"], let value = try store.repairIdCounter() {
                repaired.append("the interaction id counter set to \(value)")
            }
            let problems = try store.check()
            if json {
                try printJSON(Report(path: store.path, ok: problems.isEmpty, problems: problems, repaired: repaired))
            } else {
                for line in repaired { print("repaired: \(line)") }
                for line in problems { print("problem: \(terminalSafe(line))") }
                if problems.isEmpty { print("ok: \(store.path)") }
            }
            if !problems.isEmpty {
                throw CLIError(path: store.path, "\(problems.count) problem\(problems.count == 1 ? "" : "s") found")
            }
        }
    }

    struct Export: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Export interactions as CSV or JSON Lines.",
            discussion: """
                CSV columns: id,profile,item,kind,value,timestamp. It re-imports with --format csv \
                --profile-column profile --item-column item --time-column timestamp --value-column value \
                --kind-column kind.
                """)

        @OptionGroup var database: DatabaseOptions
        @Option(help: "csv or jsonl.") var format: ExportFormat = .csv
        @Option(help: "Only this profile.") var profile: String?
        @Option(name: .shortAndLong,
                help: "Write to this regular file (atomically: a temporary file beside it, then renamed) instead of standard output.")
        var output: String?

        func validate() throws {
            _ = try database.path()
        }

        func run() throws {
            let store = try database.openForReading()
            if let output {
                let rows = try store.export(format: format, profile: profile, toFile: output)
                print("exported \(rows) interactions to \(output)")
            } else {
                try store.export(format: format, profile: profile, toFileDescriptor: STDOUT_FILENO,
                                 name: "standard output")
            }
        }
    }

    struct Compact: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Trim profiles to the retention cap, drop unused item ids, and shrink the file.")

        @OptionGroup var database: DatabaseOptions
        @Option(parsing: .unconditional, help: "Set the retention cap (interactions kept per profile) first.")
        var retentionCap: Int?
        @Flag(help: "Set the retention cap to unlimited first.") var unlimited = false
        @Flag(help: "Skip giving free pages back to the file system.") var noVacuum = false
        @Flag(help: "Print JSON.") var json = false

        func validate() throws {
            _ = try database.path()
            if let retentionCap, retentionCap < 1 {
                throw ValidationError("--retention-cap must be at least 1 (got \(retentionCap)); --unlimited for none")
            }
            if retentionCap != nil && unlimited { throw ValidationError("give --retention-cap N or --unlimited, not both") }
        }

        func run() throws {
            let store = try database.open(create: false)
            // The new cap in the trim's transaction: a kill never leaves it over the untrimmed history.
            let report = unlimited || retentionCap != nil
                ? try store.compact(retentionCap: unlimited ? nil : retentionCap, vacuum: !noVacuum)
                : try store.compact(vacuum: !noVacuum)
            if json { return try printJSON(report) }
            print("trimmed \(report.trimmedInteractions) interactions, removed \(report.removedItems) unused items, "
                  + "freed \(report.freedPages) pages; \(report.databaseBytesBefore) → \(report.databaseBytesAfter) bytes "
                  + "(retention cap \(try store.retentionCap().map(String.init) ?? "unlimited"))")
        }
    }
}

extension Duration {
    var seconds: Double {
        let (whole, attoseconds) = components
        return Double(whole) + Double(attoseconds) * 1e-18
    }
}
