/*
 * loadgen: a closed-loop echo load client for examples/bench.
 *
 * Opens N TCP connections; each keeps exactly one request in flight: send a
 * message, read back exactly as many bytes, check every byte, repeat.  The
 * payload of each request starts at a different offset of a fixed pattern, so
 * a server that replays a stale buffer or mixes up connections is caught.
 *
 * It is written in C so that the client is not the bottleneck: a Python
 * client on a 2-core machine saturates before the fastest servers do.  Its
 * own CPU share (getrusage) is reported so the table can show it.  Given
 * --server-pid, it also reports the server's CPU time per request over the
 * same window (user and system, from /proc/PID/stat).
 *
 * Output: one JSON line on stdout.  Exit status 0 on success, 1 on any
 * mismatch or connection error (the measurement is then not trustworthy),
 * 2 on bad usage or when it cannot connect at all.
 *
 * With --tls (when built with -DWITH_TLS and linked with OpenSSL) every
 * connection speaks TLS: the handshake is made, blocking, before the clock
 * starts, then the same one-request-in-flight loop runs through SSL_write and
 * SSL_read.  The server's certificate is not checked: only the cost of the
 * encrypted echo is measured.
 *
 * Build: gcc -O2 -o loadgen loadgen.c   (Linux only: epoll)
 *        gcc -O2 -DWITH_TLS -o loadgen-tls loadgen.c -lssl -lcrypto
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#ifdef WITH_TLS
#include <openssl/err.h>
#include <openssl/ssl.h>
#endif

/* The pattern has a prime period, so consecutive requests (whose offsets
 * step by another prime) never carry the same bytes at the same positions. */
#define PERIOD 251
#define STEP 37

/* Log-linear latency histogram over nanoseconds: 2^SUB_BITS buckets per
 * power of two, i.e. under 1% relative error, constant memory. */
#define SUB_BITS 7
#define SUB (1 << SUB_BITS)
#define NBUCKETS (64 * SUB)

typedef struct {
    int fd;
    uint32_t id;
    uint64_t seq;        /* requests started on this connection */
    size_t sent;         /* bytes of the current request sent */
    size_t received;     /* bytes of the current echo received and checked */
    const unsigned char *msg; /* current request's bytes (points into pattern) */
    uint64_t started_ns;
    int want_out;        /* EPOLLOUT currently registered */
    int dead;
#ifdef WITH_TLS
    SSL *ssl;            /* NULL without --tls */
#endif
} conn_t;

static uint64_t hist[NBUCKETS];
static unsigned char *pattern;
static size_t msg_size = 1024;
static uint64_t mismatches, errors, requests, bytes_total;
static uint64_t lat_min = UINT64_MAX, lat_max;
static int counting;
static volatile sig_atomic_t stop_flag;

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static double cpu_seconds(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec +
           ru.ru_stime.tv_usec / 1e6;
}

static int bucket_of(uint64_t v) {
    if (v < SUB) return (int)v;
    int msb = 63 - __builtin_clzll(v);
    int shift = msb - SUB_BITS;
    return (shift + 1) * SUB + (int)((v >> shift) & (SUB - 1));
}

/* Upper edge of a bucket, so percentiles never under-report. */
static uint64_t bucket_value(int b) {
    if (b < SUB) return (uint64_t)b;
    int shift = b / SUB - 1;
    uint64_t sub = (uint64_t)(b % SUB);
    return ((SUB + sub + 1) << shift) - 1;
}

static double percentile_us(double p) {
    uint64_t total = 0;
    for (int i = 0; i < NBUCKETS; i++) total += hist[i];
    if (total == 0) return 0.0;
    uint64_t rank = (uint64_t)(p / 100.0 * (double)total);
    if (rank >= total) rank = total - 1;
    uint64_t seen = 0;
    for (int i = 0; i < NBUCKETS; i++) {
        seen += hist[i];
        if (seen > rank) {
            uint64_t v = bucket_value(i);
            if (v > lat_max) v = lat_max;
            if (v < lat_min) v = lat_min;
            return (double)v / 1000.0;
        }
    }
    return (double)lat_max / 1000.0;
}

static void on_signal(int sig) {
    (void)sig;
    stop_flag = 1;
}

static void set_events(int ep, conn_t *c, int want_out) {
    if (c->want_out == want_out) return;
    struct epoll_event ev = {.events = EPOLLIN | (want_out ? EPOLLOUT : 0), .data.ptr = c};
    if (epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev) == 0) c->want_out = want_out;
}

#ifdef WITH_TLS
static SSL_CTX *tls_ctx;

/* One write or read through TLS, with the plain calls' contract: bytes moved,
 * or -1 with errno EAGAIN (and *want_out set if it must wait for writability)
 * or another errno.  0 from tls_read is the end of the stream. */
static ssize_t tls_io(conn_t *c, void *buf, size_t len, int writing, int *want_out) {
    ERR_clear_error();
    int n = writing ? SSL_write(c->ssl, buf, (int)len) : SSL_read(c->ssl, buf, (int)len);
    if (n > 0) return n;
    switch (SSL_get_error(c->ssl, n)) {
    case SSL_ERROR_WANT_READ: errno = EAGAIN; return -1;
    case SSL_ERROR_WANT_WRITE: *want_out = 1; errno = EAGAIN; return -1;
    case SSL_ERROR_ZERO_RETURN: return 0;
    case SSL_ERROR_SYSCALL: if (errno == 0) errno = ECONNRESET; return -1;
    default: errno = EPROTO; return -1;
    }
}
#endif

static ssize_t conn_send(conn_t *c, const void *buf, size_t len, int *want_out) {
#ifdef WITH_TLS
    if (c->ssl) return tls_io(c, (void *)buf, len, 1, want_out);
#endif
    ssize_t n = send(c->fd, buf, len, MSG_NOSIGNAL);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) *want_out = 1;
    return n;
}

static ssize_t conn_recv(conn_t *c, void *buf, size_t len) {
    int ignored = 0;
#ifdef WITH_TLS
    if (c->ssl) return tls_io(c, buf, len, 0, &ignored);
#endif
    (void)ignored;
    return recv(c->fd, buf, len, 0);
}

static void kill_conn(int ep, conn_t *c, const char *why) {
    if (c->dead) return;
    if (errors < 5) fprintf(stderr, "loadgen: connection %u: %s\n", c->id, why);
    errors++;
    c->dead = 1;
    epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    c->fd = -1;
}

static void start_request(conn_t *c) {
    size_t offset = (size_t)((c->seq * STEP + (uint64_t)c->id * 101u) % PERIOD);
    c->msg = pattern + offset;
    c->seq++;
    c->sent = 0;
    c->received = 0;
    c->started_ns = now_ns();
}

/* Send what the kernel takes; returns -1 after killing the connection. */
static int pump_send(int ep, conn_t *c) {
    while (c->sent < msg_size) {
        int want_out = 0;
        ssize_t n = conn_send(c, c->msg + c->sent, msg_size - c->sent, &want_out);
        if (n > 0) {
            c->sent += (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            /* TLS may need to read first (EPOLLIN is always registered). */
            set_events(ep, c, want_out);
            return 0;
        }
        kill_conn(ep, c, n < 0 ? strerror(errno) : "send returned 0");
        return -1;
    }
    set_events(ep, c, 0);
    return 0;
}

static void pump_recv(int ep, conn_t *c, unsigned char *buf, size_t bufsize) {
    for (;;) {
        size_t want = msg_size - c->received;
        if (want == 0) return;
        if (want > bufsize) want = bufsize;
        ssize_t n = conn_recv(c, buf, want);
        if (n < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) return;
            kill_conn(ep, c, strerror(errno));
            return;
        }
        if (n == 0) {
            kill_conn(ep, c, "server closed the connection mid-request");
            return;
        }
        if (c->received + (size_t)n > c->sent) {
            /* More echoed than was sent: the server invented bytes. */
            mismatches++;
            kill_conn(ep, c, "received more bytes than were sent");
            return;
        }
        if (memcmp(buf, c->msg + c->received, (size_t)n) != 0) {
            mismatches++;
            kill_conn(ep, c, "echoed bytes differ from the bytes sent");
            return;
        }
        c->received += (size_t)n;
        if (c->received == msg_size) {
            uint64_t t = now_ns();
            if (counting) {
                uint64_t lat = t - c->started_ns;
                hist[bucket_of(lat)]++;
                if (lat < lat_min) lat_min = lat;
                if (lat > lat_max) lat_max = lat;
                requests++;
                bytes_total += msg_size; /* payload echoed, one direction */
            }
            if (stop_flag) return;
            start_request(c);
            if (pump_send(ep, c) < 0) return;
        }
    }
}

static int connect_one(const struct addrinfo *ai) {
    for (; ai; ai = ai->ai_next) {
        int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
        if (fd < 0) continue;
        if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0) {
            int one = 1;
            setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
            fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
            return fd;
        }
        close(fd);
    }
    return -1;
}

static void usage(void) {
    fprintf(stderr, "usage: loadgen [--host H] --port P [--size BYTES] [--conns N] [--duration S] [--warmup S] "
                    "[--cpu N] [--server-pid PID] [--tls]\n");
}

/* Another process's user and system CPU seconds, from /proc/PID/stat (fields
 * 14 and 15, counted after the parenthesised command name, which may itself
 * contain spaces or parentheses).  0 on success, -1 if it cannot be read. */
static int proc_cpu(long pid, double *user, double *sys) {
    char path[64], text[1024];
    snprintf(path, sizeof path, "/proc/%ld/stat", pid);
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    size_t n = fread(text, 1, sizeof text - 1, f);
    fclose(f);
    text[n] = '\0';
    char *p = strrchr(text, ')');
    unsigned long long ut, st;
    /* after ")": state(3) ppid pgrp session tty_nr tpgid flags minflt cminflt majflt cmajflt utime(14) stime(15) */
    if (!p || sscanf(p + 1, " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2) return -1;
    double hz = (double)sysconf(_SC_CLK_TCK);
    *user = (double)ut / hz;
    *sys = (double)st / hz;
    return 0;
}

int main(int argc, char **argv) {
    const char *host = "127.0.0.1";
    const char *port = NULL;
    int conns = 1, cpu = -1;
    long server_pid = 0;
    int tls = 0;
    double duration = 5.0, warmup = 1.0;
    static const struct option opts[] = {
        {"host", required_argument, 0, 'h'},     {"port", required_argument, 0, 'p'},
        {"size", required_argument, 0, 's'},     {"conns", required_argument, 0, 'c'},
        {"duration", required_argument, 0, 'd'}, {"warmup", required_argument, 0, 'w'},
        {"cpu", required_argument, 0, 'u'},      {"server-pid", required_argument, 0, 'S'},
        {"tls", no_argument, 0, 'T'},            {0, 0, 0, 0},
    };
    int opt;
    while ((opt = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (opt) {
        case 'h': host = optarg; break;
        case 'p': port = optarg; break;
        case 's': msg_size = (size_t)strtoull(optarg, NULL, 10); break;
        case 'c': conns = atoi(optarg); break;
        case 'd': duration = atof(optarg); break;
        case 'w': warmup = atof(optarg); break;
        case 'u': cpu = atoi(optarg); break;
        case 'S': server_pid = atol(optarg); break;
        case 'T': tls = 1; break;
        default: usage(); return 2;
        }
    }
#ifdef WITH_TLS
    if (tls) {
        tls_ctx = SSL_CTX_new(TLS_client_method());
        if (!tls_ctx) {
            fprintf(stderr, "loadgen: cannot make a TLS context\n");
            return 2;
        }
        SSL_CTX_set_verify(tls_ctx, SSL_VERIFY_NONE, NULL);
        SSL_CTX_set_mode(tls_ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    }
#else
    if (tls) {
        fprintf(stderr, "loadgen: built without TLS (compile with -DWITH_TLS ... -lssl -lcrypto)\n");
        return 2;
    }
#endif
    if (!port || msg_size == 0 || conns <= 0 || duration <= 0 || warmup < 0) {
        usage();
        return 2;
    }
    if (cpu >= 0) {
        cpu_set_t set;
        CPU_ZERO(&set);
        CPU_SET(cpu, &set);
        if (sched_setaffinity(0, sizeof set, &set) != 0) perror("loadgen: sched_setaffinity");
    }
    signal(SIGPIPE, SIG_IGN);
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);

    pattern = malloc(msg_size + PERIOD);
    for (size_t i = 0; i < msg_size + PERIOD; i++) pattern[i] = (unsigned char)(i % PERIOD);
    size_t bufsize = msg_size < 262144 ? msg_size : 262144;
    unsigned char *buf = malloc(bufsize);

    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *ai;
    int rc = getaddrinfo(host, port, &hints, &ai);
    if (rc != 0) {
        fprintf(stderr, "loadgen: %s:%s: %s\n", host, port, gai_strerror(rc));
        return 2;
    }
    int ep = epoll_create1(EPOLL_CLOEXEC);
    conn_t *cs = calloc((size_t)conns, sizeof *cs);
    for (int i = 0; i < conns; i++) {
        cs[i].id = (uint32_t)i;
        cs[i].fd = connect_one(ai);
        if (cs[i].fd < 0) {
            fprintf(stderr, "loadgen: cannot connect to %s:%s: %s\n", host, port, strerror(errno));
            return 2;
        }
#ifdef WITH_TLS
        if (tls) {
            /* The handshake, blocking, before the measurement starts. */
            fcntl(cs[i].fd, F_SETFL, fcntl(cs[i].fd, F_GETFL) & ~O_NONBLOCK);
            cs[i].ssl = SSL_new(tls_ctx);
            SSL_set_fd(cs[i].ssl, cs[i].fd);
            if (SSL_connect(cs[i].ssl) != 1) {
                fprintf(stderr, "loadgen: TLS handshake with %s:%s failed\n", host, port);
                ERR_print_errors_fp(stderr);
                return 2;
            }
            fcntl(cs[i].fd, F_SETFL, fcntl(cs[i].fd, F_GETFL) | O_NONBLOCK);
        }
#endif
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &cs[i]};
        epoll_ctl(ep, EPOLL_CTL_ADD, cs[i].fd, &ev);
    }
    freeaddrinfo(ai);

    uint64_t t0 = now_ns();
    uint64_t t_measure = t0 + (uint64_t)(warmup * 1e9);
    uint64_t t_end = t_measure + (uint64_t)(duration * 1e9);
    double cpu0 = 0.0, su0 = 0.0, ss0 = 0.0, su1 = 0.0, ss1 = 0.0;
    int server_ok = server_pid > 0;
    uint64_t measure_start = 0;
    if (warmup == 0) {
        counting = 1;
        cpu0 = cpu_seconds();
        if (server_ok) server_ok = proc_cpu(server_pid, &su0, &ss0) == 0;
        measure_start = t0;
    }
    for (int i = 0; i < conns; i++) {
        start_request(&cs[i]);
        pump_send(ep, &cs[i]);
    }

    struct epoll_event *events = calloc((size_t)conns, sizeof *events);
    int alive = conns;
    uint64_t measure_end = 0;
    while (!stop_flag && alive > 0) {
        int n = epoll_wait(ep, events, conns, 100);
        if (n < 0 && errno != EINTR) {
            perror("loadgen: epoll_wait");
            break;
        }
        for (int i = 0; i < n; i++) {
            conn_t *c = events[i].data.ptr;
            if (c->dead) continue;
            if (events[i].events & (EPOLLOUT | EPOLLERR)) {
                if (pump_send(ep, c) < 0) continue;
            }
            if (events[i].events & (EPOLLIN | EPOLLERR | EPOLLHUP)) pump_recv(ep, c, buf, bufsize);
        }
        uint64_t t = now_ns();
        if (!counting && t >= t_measure) {
            counting = 1;
            cpu0 = cpu_seconds();
            if (server_ok) server_ok = proc_cpu(server_pid, &su0, &ss0) == 0;
            measure_start = t;
        }
        if (t >= t_end) {
            measure_end = t;
            break;
        }
        alive = 0;
        for (int i = 0; i < conns; i++) alive += !cs[i].dead;
    }
    if (measure_end == 0) measure_end = now_ns();
    double cpu1 = cpu_seconds();
    if (server_ok) server_ok = proc_cpu(server_pid, &su1, &ss1) == 0;
    for (int i = 0; i < conns; i++) {
        if (cs[i].dead) continue;
#ifdef WITH_TLS
        if (cs[i].ssl) SSL_free(cs[i].ssl); /* no close_notify: the measurement is over */
#endif
        close(cs[i].fd);
    }

    double seconds = measure_start ? (double)(measure_end - measure_start) / 1e9 : 0.0;
    double cpu_pct = seconds > 0 ? 100.0 * (cpu1 - cpu0) / seconds : 0.0;
    double rps = seconds > 0 ? (double)requests / seconds : 0.0;
    double mibps = seconds > 0 ? (double)bytes_total / seconds / 1048576.0 : 0.0;
    printf("{\"requests\": %llu, \"bytes\": %llu, \"seconds\": %.6f, \"rps\": %.1f, \"mib_s\": %.3f, "
           "\"p50_us\": %.1f, \"p99_us\": %.1f, \"max_us\": %.1f, \"client_cpu_pct\": %.1f, "
           "\"errors\": %llu, \"mismatches\": %llu, \"size\": %zu, \"conns\": %d",
           (unsigned long long)requests, (unsigned long long)bytes_total, seconds, rps, mibps,
           percentile_us(50.0), percentile_us(99.0), requests ? (double)lat_max / 1000.0 : 0.0, cpu_pct,
           (unsigned long long)errors, (unsigned long long)mismatches, msg_size, conns);
    if (server_ok && requests)
        printf(", \"server_user_us\": %.2f, \"server_sys_us\": %.2f", (su1 - su0) * 1e6 / (double)requests,
               (ss1 - ss0) * 1e6 / (double)requests);
    printf("}\n");
    fflush(stdout);
    if (mismatches) fprintf(stderr, "loadgen: FAIL: %llu echo mismatches\n", (unsigned long long)mismatches);
    return (errors || mismatches) ? 1 : 0;
}
