// The repack cache (repack_cache.h): map a valid file, check it chunk by chunk, write a new one.

#include "repack_cache.h"

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fcntl.h>
#include <mutex>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <vector>

namespace repack_cache {
namespace {

constexpr char MAGIC[8] = {'A', 'S', 'R', 'G', 'R', 'P', 'K', '1'};
constexpr size_t FIXED = 28;  // magic, data size, chunk size, key length

struct Pending {
    std::string path, key;
    bool armed = false;
};

struct Bound {
    uint8_t * data = nullptr;
    size_t size = 0;
    bool mapped = false;
    State state = NONE;
    size_t chunk = 0;
    std::vector<uint64_t> sums;
    std::vector<uint8_t> checked;
};

std::mutex g_mu;
Pending g_pending;
Bound g_bound;

inline uint64_t rotl(uint64_t x, int r) { return (x << r) | (x >> (64 - r)); }

// xxhash64's round over 4 lanes of 8-byte words (not xxhash64 itself: a checksum, never compared elsewhere)
uint64_t checksum(const uint8_t * p, size_t n) {
    constexpr uint64_t P1 = 11400714785074694791ull, P2 = 14029467366897019727ull;
    uint64_t a = P1 + P2, b = P2, c = 0, d = 0 - P1;
    size_t i = 0;
    for (; i + 32 <= n; i += 32) {
        uint64_t w[4];
        memcpy(w, p + i, 32);
        a = rotl(a + w[0] * P2, 31) * P1;
        b = rotl(b + w[1] * P2, 31) * P1;
        c = rotl(c + w[2] * P2, 31) * P1;
        d = rotl(d + w[3] * P2, 31) * P1;
    }
    uint64_t h = rotl(a, 1) + rotl(b, 7) + rotl(c, 12) + rotl(d, 18) + n;
    for (; i < n; ++i) h = rotl(h ^ (p[i] * P1), 11) * P2;
    h ^= h >> 33;
    h *= P2;
    h ^= h >> 29;
    return h;
}

size_t chunk_for(size_t size, size_t key_len) {
    size_t chunk = 1 << 20;
    while (FIXED + key_len + 8 * ((size + chunk - 1) / chunk) > HEADER) chunk *= 2;
    return chunk;
}

bool read_all(int fd, void * dst, size_t n, off_t off) {
    uint8_t * p = (uint8_t *) dst;
    while (n) {
        const ssize_t r = pread(fd, p, n, off);
        if (r <= 0) return false;
        p += r, n -= (size_t) r, off += r;
    }
    return true;
}

bool write_all(int fd, const void * src, size_t n) {
    const uint8_t * p = (const uint8_t *) src;
    while (n) {
        const ssize_t w = write(fd, p, n > (64u << 20) ? (64u << 20) : n);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return false;
        p += w, n -= (size_t) w;
    }
    return true;
}

// the mapped data of a valid file at `path` for `size` bytes under `key`, its chunk size and checksums
uint8_t * map_valid(const std::string & path, const std::string & key, size_t size, size_t * chunk,
                    std::vector<uint64_t> * sums) {
    const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return nullptr;
    uint8_t * data = nullptr;
    struct stat st;
    std::vector<uint8_t> h(HEADER);
    uint64_t dsize = 0, csize = 0;
    uint32_t klen = 0;
    if (fstat(fd, &st) == 0 && (size_t) st.st_size == HEADER + size && read_all(fd, h.data(), HEADER, 0) &&
        memcmp(h.data(), MAGIC, 8) == 0) {
        memcpy(&dsize, h.data() + 8, 8);
        memcpy(&csize, h.data() + 16, 8);
        memcpy(&klen, h.data() + 24, 4);
        const bool ok = dsize == size && klen == key.size() && csize == chunk_for(size, key.size()) &&
                        memcmp(h.data() + FIXED, key.data(), klen) == 0;
        if (ok) {
            const size_t n = (size + csize - 1) / csize;
            sums->assign(n, 0);
            memcpy(sums->data(), h.data() + FIXED + klen, 8 * n);
            void * m = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, (off_t) HEADER);
            if (m != MAP_FAILED) {
                data = (uint8_t *) m;
                *chunk = csize;
            }
        }
    }
    close(fd);
    return data;
}

}  // namespace

uint8_t * try_map(size_t size, bool * bound) {
    std::lock_guard<std::mutex> lk(g_mu);
    *bound = g_pending.armed;
    if (!g_pending.armed) return nullptr;
    g_pending.armed = false;
    g_bound = Bound{};
    g_bound.size = size;
    g_bound.state = MISS;
    uint8_t * data = map_valid(g_pending.path, g_pending.key, size, &g_bound.chunk, &g_bound.sums);
    if (data) {
        g_bound.data = data;
        g_bound.mapped = true;
        g_bound.state = HIT;
        g_bound.checked.assign(g_bound.sums.size(), 0);
    }
    return data;
}

void bind_allocated(uint8_t * data, size_t size) {
    std::lock_guard<std::mutex> lk(g_mu);
    g_bound.data = data;
    g_bound.size = size;
    g_bound.mapped = false;
    g_bound.state = MISS;
}

bool verify(size_t offset, size_t size) {
    std::lock_guard<std::mutex> lk(g_mu);
    if (!g_bound.mapped || offset + size > g_bound.size) return false;
    if (size == 0) return true;
    const size_t c = g_bound.chunk;
    for (size_t i = offset / c; i <= (offset + size - 1) / c; ++i) {
        if (g_bound.checked[i]) continue;
        const size_t n = std::min(c, g_bound.size - i * c);
        if (checksum(g_bound.data + i * c, n) != g_bound.sums[i]) return false;
        g_bound.checked[i] = 1;
    }
    return true;
}

void mark_stale() {
    std::lock_guard<std::mutex> lk(g_mu);
    if (g_bound.state == HIT) g_bound.state = STALE;
}

void unbind(const uint8_t * data) {
    std::lock_guard<std::mutex> lk(g_mu);
    if (data == g_bound.data) g_bound = Bound{};
}

}  // namespace repack_cache

using namespace repack_cache;

extern "C" {

// name the cache file and key of the next decoder load (its first buffer of this backend is bound to them)
__attribute__((visibility("default"))) void asrgguf_native_cache_begin(const char * path, const char * key) {
    std::lock_guard<std::mutex> lk(g_mu);
    g_pending.path = path;
    g_pending.key = key;
    g_pending.armed = true;
    g_bound = Bound{};
}

// after the load: 0 no buffer was allocated, 1 the file was used, 2 there was no valid file, 3 the file was
// mapped but a weight differed (rebuilt from the GGUF). Disarms a pending name no load consumed.
__attribute__((visibility("default"))) int asrgguf_native_cache_end(void) {
    std::lock_guard<std::mutex> lk(g_mu);
    g_pending.armed = false;
    return g_bound.data ? (int) g_bound.state : (int) NONE;
}

// write the bound buffer as a cache file to fd (from its start); 0, or an errno
__attribute__((visibility("default"))) int asrgguf_native_cache_write(int fd) {
    std::lock_guard<std::mutex> lk(g_mu);
    if (!g_bound.data) return EINVAL;
    const std::string & key = g_pending.key;
    const size_t size = g_bound.size, chunk = chunk_for(size, key.size()), n = (size + chunk - 1) / chunk;
    std::vector<uint8_t> h(HEADER, 0);
    const uint64_t dsize = size, csize = chunk;
    const uint32_t klen = (uint32_t) key.size();
    memcpy(h.data(), MAGIC, 8);
    memcpy(h.data() + 8, &dsize, 8);
    memcpy(h.data() + 16, &csize, 8);
    memcpy(h.data() + 24, &klen, 4);
    memcpy(h.data() + FIXED, key.data(), klen);
    for (size_t i = 0; i < n; ++i) {
        const uint64_t s = checksum(g_bound.data + i * chunk, std::min(chunk, size - i * chunk));
        memcpy(h.data() + FIXED + klen + 8 * i, &s, 8);
    }
    if (!write_all(fd, h.data(), HEADER) || !write_all(fd, g_bound.data, size)) return errno ? errno : EIO;
    return 0;
}

}  // extern "C"
