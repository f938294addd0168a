// Files mapped into memory, for a SIGBUS handler that names the file (see
// Sources/FileSafety/MappedFiles.swift). A file truncated while mapped (rewritten in
// place by cp, an unfinished copy) kills a process that touches a page past its new
// end with SIGBUS; the handler turns that into one line naming the file and exit 1.
// Static slots read through atomics, as in palr_cleanup.h.
#ifndef PALR_MAPPED_H
#define PALR_MAPPED_H

#define PALR_MAPPED_SLOTS 32

/// Records that `size` bytes at `base` map the file `path`; returns the slot, or -1
/// when every slot is taken or the path does not fit in PATH_MAX bytes.
int palr_mapped_register(const void *base, unsigned long size, const char *path);

/// Frees a slot (before the mapping is unmapped); other values are ignored.
void palr_mapped_unregister(int slot);

/// The path of the registered mapping that holds `address` copied into `out`, 1; or 0.
int palr_mapped_lookup(const void *address, char *out, unsigned long size);

/// Installs the SIGBUS handler: a fault inside a registered mapping writes
/// "Error: PATH was truncated or could not be read …" to standard error, removes the registered temporary
/// files (palr_cleanup_remove_all) and ends the process with status 1; any other
/// SIGBUS goes to the handler installed before (Swift's crash report) or the default
/// action. Returns 0, or -1 if sigaction failed.
int palr_mapped_install_bus_handler(void);

#endif
