// The repack cache: the native backend's weight buffer of one decoder, kept in a file so that the next load
// maps it (file-backed pages, read as they are used) instead of repacking the GGUF again.
//
// File layout (little-endian):
//   0       8 bytes  magic "ASRGRPK1"
//   8       u64      data size (the buffer's size in bytes)
//   16      u64      chunk size (bytes checksummed together)
//   24      u32      key length, then the key (asrgguf's description of the GGUF and of this library:
//                    size, mtime, a hash of its header, versions, flags)
//   ...     u64[]    one checksum per chunk of the data
//   HEADER  data     the buffer, byte for byte (HEADER = 64 KiB: mmap needs a page-aligned offset)
//
// asrgguf (Python) names the file and the key before the decoder loads (asrgguf_native_cache_begin); the
// first buffer the backend allocates after that is bound to it. A file whose magic, key, sizes do not match
// is never mapped (the buffer is repacked as without a cache). A mapped file is checked as llama.cpp hands
// each weight over: the checksums of the chunks under it, and, for a repacked weight, its first 16 rows
// repacked again from the GGUF's bytes and compared; any difference and that weight is repacked from the
// GGUF into the (private) mapping, and the cache is reported stale. After the load asrgguf asks how it went
// (asrgguf_native_cache_end) and writes a new file when there was none or it was stale
// (asrgguf_native_cache_write, into a temporary file that asrgguf renames into place).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace repack_cache {

constexpr size_t HEADER = 64 << 10;

enum State { NONE = 0, HIT = 1, MISS = 2, STALE = 3 };

// data of a valid cache file for a buffer of `size` bytes (MAP_PRIVATE, writable), or nullptr; consumes
// the pending name (only the first buffer after asrgguf_native_cache_begin is bound)
uint8_t * try_map(size_t size, bool * bound);
// whether [offset, offset+size) of the mapped data passes its chunks' checksums (each chunk checked once)
bool verify(size_t offset, size_t size);
// the state of the bound buffer: a weight of a mapped cache differed (repacked again from the GGUF)
void mark_stale();
// the bound buffer (mapped or allocated) was freed
void unbind(const uint8_t * data);
void bind_allocated(uint8_t * data, size_t size);

}  // namespace repack_cache
