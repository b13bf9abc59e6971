/* The compiled round-trip loops of `loopscope bench` (built and loaded by loopscope/bench/native.py).
 *
 * The method is the Python engine's, without the interpreter: read CLOCK_MONOTONIC (the clock of
 * Python's time.perf_counter_ns on Linux) once after each round trip and store the difference to the
 * previous read, so a sample is one round trip plus the loop's own bookkeeping (a store, two compares).
 *
 * Every entry point checks its bounds and returns -EINVAL on a bad argument; system call errors come
 * back as -errno (EINTR is retried), a peer that closed as LS_RR_EOF. Built with
 * `cc -O2 -shared -fPIC -Wall -Wextra`: it must stay free of warnings.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

/* Largest message of a round trip or an echo (loopscope.bench.server.MAX_MESSAGE_BYTES). */
#define LS_MAX_MESSAGE_BYTES (64L * 1024 * 1024)
/* Returned when the peer closed the connection: below every -errno (errno values are < 4096). */
#define LS_RR_EOF (-1000000L)
/* Receive buffer of the UDP echo: the largest datagram. */
#define LS_UDP_BUFFER_BYTES 65536

long ls_max_message_bytes(void) { return LS_MAX_MESSAGE_BYTES; }

long ls_rr_eof(void) { return LS_RR_EOF; }

static inline long long now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000000LL + (long long)ts.tv_nsec;
}

/* Write all n bytes: 0, or -errno. */
static long write_all(int fd, const char *p, long n) {
    long done = 0;
    while (done < n) {
        ssize_t w = write(fd, p + done, (size_t)(n - done));
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        if (w == 0)
            return -EIO;
        done += (long)w;
    }
    return 0;
}

/* Read exactly n bytes: 0, LS_RR_EOF when the peer closed first, or -errno. */
static long read_all(int fd, char *p, long n) {
    long done = 0;
    while (done < n) {
        ssize_t r = read(fd, p + done, (size_t)(n - done));
        if (r < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        if (r == 0)
            return LS_RR_EOF;
        done += (long)r;
    }
    return 0;
}

/* Read one datagram of at most n bytes (its length may differ, as with the Python engine): 0 or -errno. */
static long read_datagram(int fd, char *p, long n) {
    for (;;) {
        ssize_t r = recv(fd, p, (size_t)n, 0);
        if (r >= 0)
            return 0;
        if (errno != EINTR)
            return -errno;
    }
}

/* Up to `count` round trips on a connected stream or datagram socket `fd`: write the `size` bytes of
 * `payload`, read `size` bytes back (one datagram on a datagram socket). Stops early once the clock
 * passes `end_ns` (CLOCK_MONOTONIC ns). out_ns[i] = ns between the clock reads after round trips i-1
 * and i (the first from a read just before the loop); the caller sizes out_ns to hold `count` values.
 *
 * Returns the number of round trips done (>= 1 when count >= 1), LS_RR_EOF when the peer closed, or
 * -errno (EAGAIN when SO_RCVTIMEO/SO_SNDTIMEO expired, EINVAL for a bad argument).
 */
long ls_rr_timed(int fd, const char *payload, long size, long count, long long end_ns,
                 long long *out_ns) {
    if (fd < 0 || payload == NULL || size < 1 || size > LS_MAX_MESSAGE_BYTES || count < 0)
        return -EINVAL;
    if (count == 0)
        return 0;
    if (out_ns == NULL)
        return -EINVAL;
    int type = 0;
    socklen_t len = sizeof type;
    if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) < 0)
        return -errno;
    int dgram = type == SOCK_DGRAM;
    char *buf = malloc((size_t)size);
    if (buf == NULL)
        return -ENOMEM;
    long done = 0;
    long rc = 0;
    long long prev = now_ns();
    while (done < count) {
        rc = write_all(fd, payload, size);
        if (rc == 0)
            rc = dgram ? read_datagram(fd, buf, size) : read_all(fd, buf, size);
        if (rc < 0)
            break;
        long long now = now_ns();
        out_ns[done++] = now - prev;
        prev = now;
        if (now > end_ns)
            break;
    }
    free(buf);
    return rc < 0 ? rc : done;
}

/* The server's echo loop on a connected stream socket: read `size` bytes, answer `size` bytes of
 * 'r', until the peer closes. Returns 0 at EOF (also mid-message), or -errno. */
long ls_echo(int fd, long size) {
    if (fd < 0 || size < 1 || size > LS_MAX_MESSAGE_BYTES)
        return -EINVAL;
    char *buf = malloc((size_t)size);
    char *response = malloc((size_t)size);
    long rc = 0;
    if (buf == NULL || response == NULL) {
        rc = -ENOMEM;
    } else {
        memset(response, 'r', (size_t)size);
        for (;;) {
            rc = read_all(fd, buf, size);
            if (rc == LS_RR_EOF) {
                rc = 0;
                break;
            }
            if (rc < 0)
                break;
            rc = write_all(fd, response, size);
            if (rc < 0)
                break;
        }
    }
    free(buf);
    free(response);
    return rc;
}

/* The UDP server's loop on an unconnected datagram socket: send each datagram back to its sender.
 * Returns only on an error, as -errno. */
long ls_udp_echo(int fd) {
    if (fd < 0)
        return -EINVAL;
    char *buf = malloc(LS_UDP_BUFFER_BYTES);
    if (buf == NULL)
        return -ENOMEM;
    long rc = 0;
    for (;;) {
        struct sockaddr_storage addr;
        socklen_t alen = sizeof addr;
        ssize_t n = recvfrom(fd, buf, LS_UDP_BUFFER_BYTES, 0, (struct sockaddr *)&addr, &alen);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            rc = -errno;
            break;
        }
        ssize_t s;
        do {
            s = sendto(fd, buf, (size_t)n, 0, (struct sockaddr *)&addr, alen);
        } while (s < 0 && errno == EINTR);
        if (s < 0) {
            rc = -errno;
            break;
        }
    }
    free(buf);
    return rc;
}

/* The in-process baseline: a handler that copies a ready response into the caller's buffer. Called
 * through a volatile pointer so that the compiler can neither inline nor drop the call. */
typedef void (*ls_handler_fn)(const char *request, const char *response, char *out, long size);

__attribute__((noinline)) static void ls_handler(const char *request, const char *response,
                                                 char *out, long size) {
    (void)request;
    memcpy(out, response, (size_t)size);
    __asm__ __volatile__("" : : "r"(out) : "memory");
}

static ls_handler_fn volatile ls_handler_ptr = ls_handler;

/* Up to `count` calls of the handler with `size`-byte messages, timed like ls_rr_timed (one clock
 * read per call, stop once the clock passes end_ns). Returns the number done or -errno. */
long ls_call_timed(long size, long count, long long end_ns, long long *out_ns) {
    if (size < 1 || size > LS_MAX_MESSAGE_BYTES || count < 0)
        return -EINVAL;
    if (count == 0)
        return 0;
    if (out_ns == NULL)
        return -EINVAL;
    char *request = malloc((size_t)size);
    char *response = malloc((size_t)size);
    char *out = malloc((size_t)size);
    long rc = 0;
    if (request == NULL || response == NULL || out == NULL) {
        rc = -ENOMEM;
    } else {
        memset(request, 'q', (size_t)size);
        memset(response, 'r', (size_t)size);
        long long prev = now_ns();
        while (rc < count) {
            ls_handler_ptr(request, response, out, size);
            long long now = now_ns();
            out_ns[rc++] = now - prev;
            prev = now;
            if (now > end_ns)
                break;
        }
    }
    free(request);
    free(response);
    free(out);
    return rc;
}

/* Smallest difference of two back-to-back CLOCK_MONOTONIC reads over `samples` tries, in ns (the
 * timer cost inside every sample of this engine); -EINVAL when samples < 1. */
long long ls_clock_overhead_ns(long samples) {
    if (samples < 1)
        return -EINVAL;
    long long best = -1;
    for (long i = 0; i < samples; i++) {
        long long a = now_ns();
        long long d = now_ns() - a;
        if (best < 0 || d < best)
            best = d;
    }
    return best;
}
