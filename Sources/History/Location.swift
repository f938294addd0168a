// Where the history database lives when no path is given.
import Foundation

extension HistoryStore {
    /// The default database file: `$PALR_DB` when set, else
    /// `$XDG_DATA_HOME/palr/history.sqlite` (when XDG_DATA_HOME is an absolute
    /// path, as the XDG spec requires), else `$HOME/.local/share/palr/history.sqlite`.
    /// nil when none of these variables is set.
    public static func defaultPath(environment: [String: String] = ProcessInfo.processInfo.environment) -> String? {
        if let path = environment["PALR_DB"], !path.isEmpty { return path }
        if let data = environment["XDG_DATA_HOME"], data.hasPrefix("/") {
            return (data as NSString).appendingPathComponent("palr/history.sqlite")
        }
        if let home = environment["HOME"], !home.isEmpty {
            return (home as NSString).appendingPathComponent(".local/share/palr/history.sqlite")
        }
        return nil
    }
}
