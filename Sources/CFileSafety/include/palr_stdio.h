// The standard descriptors and stdio's error state, for the executables' start and exit
// (see Sources/FileSafety/StandardStreams.swift).
#ifndef PALR_STDIO_H
#define PALR_STDIO_H

/// Opens /dev/null on a closed descriptor 0 and /dev/full on a closed 1 or 2, so that no
/// later open(2) gets one of them (a file opened as descriptor 1 would receive every
/// `print`). Returns a bit mask of the descriptors that were closed (bit 0, 1, 2).
unsigned palr_guard_standard_descriptors(void);

/// Flushes standard output; returns 0 when it took everything written to it so far,
/// else the errno of the failure (for an earlier failure stdio only recorded: EPIPE on a
/// pipe or socket, else EIO).
int palr_flush_standard_output(void);

#endif

/// The file system type (statfs's f_type, e.g. 0x6969 for NFS) of the file system that
/// holds `path` into `*type`; 0 on success, -1 with errno set otherwise (or where the
/// platform has no statfs).
int palr_file_system_type(const char *path, unsigned long *type);
