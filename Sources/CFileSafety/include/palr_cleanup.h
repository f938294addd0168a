// A registry of temporary files to unlink from a signal handler (see
// Sources/FileSafety/SignalCleanup.swift). Written in C so that the handler's
// side touches only static memory through atomics: no Swift runtime calls, no
// locks, no allocation.
#ifndef PALR_CLEANUP_H
#define PALR_CLEANUP_H

// A history store's creation holds four (its temporary and SQLite's three files beside
// it): 16 ran out when eight threads of one process created stores at once, and writers
// of other files then went unregistered. Untouched slots cost no resident memory.
#define PALR_CLEANUP_SLOTS 64

/// Copies `path` into a free slot; returns the slot, or -1 when every slot is
/// taken, the path (with its NUL) does not fit in PATH_MAX bytes, or
/// `palr_cleanup_remove_all` has run (the process is dying).
int palr_cleanup_register(const char *path);

/// Frees a slot `palr_cleanup_register` returned (other values are ignored).
void palr_cleanup_unregister(int slot);

/// Unlinks every registered path, then removes every registered path that is an
/// empty folder (so a folder registered together with its files goes too).
/// Async-signal-safe; errno is preserved. For a dying process: from then on
/// nothing registers any more.
void palr_cleanup_remove_all(void);

/// Copies the path in `slot` into `out` (`size` bytes); returns 1 if the slot
/// holds one. For tests and diagnostics.
int palr_cleanup_registered(int slot, char *out, unsigned long size);

/// Installs handlers for SIGINT, SIGTERM, SIGHUP and SIGPIPE that unlink the registered
/// paths and then die of the signal (default action, re-raised). A signal the
/// process inherited as ignored stays ignored (nohup, background jobs). Handled
/// signals are unblocked in the calling thread, whose mask threads started later
/// inherit. Returns a bit mask of the signals now handled (1 << signo).
unsigned palr_cleanup_install_handlers(void);

#endif
