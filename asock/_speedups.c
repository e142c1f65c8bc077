/* asock._speedups: the sync facade's hot methods in C.
 *
 * recv, recv_into, send and sendall of asock.sync.socket, doing exactly what
 * the pure-Python methods in asock/_sync_socket.py do (they stay the
 * reference, and this module is optional: asock/_sync_socket.py binds these
 * functions as the class's methods only when this module imports and
 * ASOCK_NO_EXTENSIONS is not set).
 *
 * What each method does, as the Python one:
 *
 * - The first attempt of every call is the C type's own method
 *   (_socket.socket.recv, ...), called unbound on the facade object, whose
 *   own timeout stays 0.0: it never waits, and argument parsing, errors and
 *   EINTR handling are the stdlib's.
 * - A receive right after a short read waits for readiness before its first
 *   attempt (the _hint slot; _core.wait_first, _core.receive_hint), only
 *   with arguments the native call will accept.
 * - An attempt that would block (BlockingIOError) gives up in non-blocking
 *   mode, or with MSG_DONTWAIT in blocking mode (_core.gives_up); otherwise
 *   the call waits with poll() on the descriptor, the GIL released, and
 *   tries again, with one monotonic deadline for the whole call
 *   (_core.deadline).  A signal interrupting poll() runs the Python signal
 *   handlers (PEP 475): an exception they raise leaves the call, otherwise
 *   the wait goes on for the time left.
 * - A timeout raises TimeoutError("timed out"), with nothing chained to it;
 *   a wait on a closed socket raises OSError(EBADF).
 * - sendall stamps bytes_sent on every exception that interrupts it after
 *   its first attempt (_core.sendall).
 *
 * Two attempts whose arguments are already known to be good are the syscall
 * itself, made right after the wait in the same stretch without the GIL
 * (one release of the GIL, as the stdlib's blocking calls have, where the C
 * method would take a second one): recv() after the wait before the first
 * attempt (bufsize an int > 0, no flags, into a new bytes object as the C
 * method makes it), and send() for sendall's further sends (after its first
 * attempt took the data and int flags).  What they do is what the C method
 * does: a result, the error its errno makes (PyErr_SetFromErrno, as the
 * stdlib raises it), or, after EINTR, the signal handlers and the syscall
 * again at once.
 *
 * The mode is the _timeout slot (None, 0.0 or a timeout), read through the
 * slot's offset on instances of the facade class itself and through the
 * attribute API on instances of subclasses.  Calls of a shape the fast path
 * does not parse (a wrong number of arguments, unexpected keywords), and an
 * instance in a state it does not expect, go to the Python method, which
 * raises exactly what it raises.
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#if PY_VERSION_HEX < 0x030C0000
#include <structmember.h>
#define Py_T_OBJECT_EX T_OBJECT_EX
#define Py_READONLY READONLY
#endif

#include <errno.h>
#include <math.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#ifdef MSG_DONTWAIT
#define DONTWAIT MSG_DONTWAIT
#else
#define DONTWAIT 0
#endif

/* poll() takes at most an int of milliseconds (~24.8 days): a longer wait
   is cut to that, and the call waits again for the time left. */
#define MAX_POLL_MS 2147483647.0

/* -- what install() records ----------------------------------------------- */

static PyTypeObject *facade;    /* asock.sync.socket */
static Py_ssize_t timeout_offset, hint_offset;  /* its _timeout and _hint slots */
static long wait_first_count;   /* _core.WAIT_FIRST */
/* _socket.socket's methods: they never wait, the object's timeout being 0.0. */
static PyObject *c_recv, *c_recv_into, *c_send, *c_fileno;
/* The reference implementations: the Python methods. */
static PyObject *py_recv, *py_recv_into, *py_send, *py_sendall;
static PyObject *str_timeout, *str_hint, *str_bytes_sent;
static PyObject *zero;

/* -- small helpers ---------------------------------------------------------- */

/* time.monotonic(), in seconds. */
static double
monotonic(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* A new reference to self.<name>: the slot itself on the facade class's own
   instances, the attribute on subclasses' (which may redefine it). */
static inline PyObject *
get_slot(PyObject *self, Py_ssize_t offset, PyObject *name)
{
    if (Py_IS_TYPE(self, facade)) {
        PyObject *value = *(PyObject **)((char *)self + offset);
        if (value != NULL) {
            Py_INCREF(value);
            return value;
        }
    }
    return PyObject_GetAttr(self, name);  /* also raises the AttributeError of an unset slot */
}

/* self.<name> = value (a new reference, stolen). */
static int
set_slot(PyObject *self, Py_ssize_t offset, PyObject *name, PyObject *value)
{
    if (value == NULL) {
        return -1;
    }
    if (Py_IS_TYPE(self, facade)) {
        PyObject **slot = (PyObject **)((char *)self + offset);
        PyObject *old = *slot;
        *slot = value;
        Py_XDECREF(old);
        return 0;
    }
    int res = PyObject_SetAttr(self, name, value);
    Py_DECREF(value);
    return res;
}

/* The socket's mode, from its _timeout slot. */
enum { BLOCKING, NONBLOCKING, TIMEOUT };
typedef struct {
    int kind;
    double timeout;  /* TIMEOUT: seconds */
} Mode;

/* 0, or -1 with an exception set, or -2: a value the fast path does not
   expect (the mode is always None or a float). */
static int
get_mode(PyObject *self, Mode *mode)
{
    PyObject *value = get_slot(self, timeout_offset, str_timeout);
    if (value == NULL) {
        return -1;
    }
    int res = 0;
    if (value == Py_None) {
        mode->kind = BLOCKING;
        mode->timeout = 0.0;
    }
    else if (PyFloat_CheckExact(value)) {
        double timeout = PyFloat_AS_DOUBLE(value);
        mode->kind = timeout == 0.0 ? NONBLOCKING : TIMEOUT;
        mode->timeout = timeout;
    }
    else {
        res = -2;
    }
    Py_DECREF(value);
    return res;
}

/* As get_mode, where the fast path cannot step aside any more (something
   already happened): any other value is taken as a number of seconds. */
static int
get_mode_now(PyObject *self, Mode *mode)
{
    int res = get_mode(self, mode);
    if (res != -2) {
        return res;
    }
    PyObject *value = get_slot(self, timeout_offset, str_timeout);
    if (value == NULL) {
        return -1;
    }
    double timeout = PyFloat_AsDouble(value);
    Py_DECREF(value);
    if (timeout == -1.0 && PyErr_Occurred()) {
        return -1;
    }
    mode->kind = timeout == 0.0 ? NONBLOCKING : TIMEOUT;
    mode->timeout = timeout;
    return 0;
}

/* _core.gives_up: whether a call that would block raises BlockingIOError
   instead of waiting.  1, 0, or -1 with an exception set. */
static int
gives_up(const Mode *mode, PyObject *flags)
{
    if (mode->kind == NONBLOCKING) {
        return 1;
    }
    if (mode->kind != BLOCKING) {
        return 0;
    }
    long value;
    if (PyLong_CheckExact(flags)) {
        value = PyLong_AsLong(flags);
    }
    else {
        PyObject *index = PyNumber_Index(flags);
        if (index == NULL) {
            return -1;
        }
        value = PyLong_AsLong(index);
        Py_DECREF(index);
    }
    if (value == -1 && PyErr_Occurred()) {
        return -1;
    }
    return (value & DONTWAIT) != 0;
}

/* The value of an exact int that fits in a machine word, cheaply; 0 if
   it does not fit (then *value is left alone). */
static inline int
small_value(PyObject *v, Py_ssize_t *value)
{
#if PY_VERSION_HEX >= 0x030C0000
    if (!PyUnstable_Long_IsCompact((PyLongObject *)v)) {
        return 0;
    }
    *value = PyUnstable_Long_CompactValue((PyLongObject *)v);
    return 1;
#else
    Py_ssize_t size = Py_SIZE(v);
    if (size < -1 || size > 1) {
        return 0;
    }
    *value = size == 0 ? 0 : size * (Py_ssize_t)((PyLongObject *)v)->ob_digit[0];
    return 1;
#endif
}

/* The sign of an exact int: -1, 0 or 1 (never an error). */
static int
sign_of(PyObject *value)
{
    Py_ssize_t n;
    if (small_value(value, &n)) {
        return (n > 0) - (n < 0);
    }
    int overflow;
    long long big = PyLong_AsLongLongAndOverflow(value, &overflow);
    if (overflow) {
        return overflow;
    }
    return (big > 0) - (big < 0);
}

/* type(value) is int and not value */
static int
is_zero(PyObject *value)
{
    return PyLong_CheckExact(value) && sign_of(value) == 0;
}

/* type(value) is int and value > 0 */
static int
is_positive(PyObject *value)
{
    /* (and fits a Py_ssize_t: a larger size is refused by the call, at once) */
    if (!PyLong_CheckExact(value) || sign_of(value) <= 0) {
        return 0;
    }
    if (PyLong_AsSsize_t(value) == -1 && PyErr_Occurred()) {
        PyErr_Clear();
        return 0;
    }
    return 1;
}

/* The exception set, taken out of the error indicator and put back. */
typedef struct {
#if PY_VERSION_HEX < 0x030C0000
    PyObject *type, *tb;
#endif
    PyObject *value;
} Saved;

static void
save_error(Saved *saved)
{
#if PY_VERSION_HEX >= 0x030C0000
    saved->value = PyErr_GetRaisedException();
#else
    PyErr_Fetch(&saved->type, &saved->value, &saved->tb);
    PyErr_NormalizeException(&saved->type, &saved->value, &saved->tb);
    if (saved->tb != NULL) {
        PyException_SetTraceback(saved->value, saved->tb);
    }
#endif
}

static void
restore_error(Saved *saved)
{
#if PY_VERSION_HEX >= 0x030C0000
    PyErr_SetRaisedException(saved->value);
#else
    PyErr_Restore(saved->type, saved->value, saved->tb);
#endif
}

static void
drop_error(Saved *saved)
{
#if PY_VERSION_HEX < 0x030C0000
    Py_XDECREF(saved->type);
    Py_XDECREF(saved->tb);
#endif
    Py_XDECREF(saved->value);
}

/* The exception set replaces by a new one, raised while it was handled:
   the new one's __context__ is the old one. */
static void
chain_error(Saved *old)
{
    Saved new;
    save_error(&new);
    PyException_SetContext(new.value, old->value);  /* steals the reference */
    old->value = NULL;
    drop_error(old);
    restore_error(&new);
}

/* _core.closed_error: the error every call on a closed socket raises. */
static void
closed_error(void)
{
    PyObject *exc = PyObject_CallFunction(PyExc_OSError, "is", EBADF, strerror(EBADF));
    if (exc != NULL) {
        PyErr_SetObject((PyObject *)Py_TYPE(exc), exc);
        Py_DECREF(exc);
    }
}

/* _core.would_block: BlockingIOError(EAGAIN), raised. */
static void
would_block(void)
{
    PyObject *exc = PyObject_CallFunction(PyExc_BlockingIOError, "is", EAGAIN, strerror(EAGAIN));
    if (exc != NULL) {
        PyErr_SetObject((PyObject *)Py_TYPE(exc), exc);
        Py_DECREF(exc);
    }
}

/* The descriptor: what the C type's fileno() returns; -2 with an exception
 * set.
 *
 * The C type keeps it in an int right after the object header (its
 * PySocketSockObject's sock_fd, on every POSIX CPython).  The first socket
 * with a descriptor checks that against fileno(); after a match the field is
 * read directly, else fileno() is called every time. */
#define FD_OFFSET ((Py_ssize_t)sizeof(PyObject))
static int fd_field;  /* 0: not checked yet; 1: read the field; -1: call fileno() */

static int
socket_fd(PyObject *self)
{
    if (fd_field == 1) {
        return *(int *)((char *)self + FD_OFFSET);
    }
    PyObject *fd = PyObject_Vectorcall(c_fileno, &self, 1, NULL);
    if (fd == NULL) {
        return -2;
    }
    long value = PyLong_AsLong(fd);
    Py_DECREF(fd);
    if (value == -1 && PyErr_Occurred()) {
        return -2;
    }
    if (fd_field == 0 && value >= 0) {
        fd_field = *(int *)((char *)self + FD_OFFSET) == (int)value ? 1 : -1;
    }
    return (int)value;
}

/* A syscall made without the GIL, and what it returned. */
typedef Py_ssize_t (*Syscall)(int fd, void *arg);
typedef struct {
    Py_ssize_t result;  /* -1: failed, with errno in err */
    int err;
} Outcome;

typedef struct {
    char *buf;
    size_t len;
    int flags;
} Span;

static Py_ssize_t
do_recv(int fd, void *arg)
{
    Span *span = (Span *)arg;
    return recv(fd, span->buf, span->len, span->flags);
}

static Py_ssize_t
do_send(int fd, void *arg)
{
    Span *span = (Span *)arg;
    return send(fd, span->buf, span->len, span->flags);
}

/* _sync_socket._poll: block until the descriptor looks ready for ``events``,
 * forever, or for at most ``left`` seconds (not at all when left <= 0); then,
 * if ``syscall`` is given, make it at once, in the same stretch without the
 * GIL (one release of the GIL for the wait and the attempt).  0, with the
 * attempt's outcome in ``out``; or -1 with an exception set.
 *
 * Readiness is only a hint: the attempt decides.  poll() rounds a fractional
 * millisecond up, so one wake-up is enough to see the deadline passed.  A
 * signal interrupting poll() runs the handlers with the GIL held; unless one
 * raises, poll() goes on for the time left (PEP 475).  A signal that arrived
 * before the wait (so without an EINTR) has its handlers run before it, as
 * the Python method's bytecode would have. */
static int
wait_then(PyObject *self, short events, int forever, double left, Syscall syscall, void *arg, Outcome *out)
{
    int fd = socket_fd(self);
    if (fd == -2) {
        return -1;
    }
    if (fd < 0) {
        closed_error();
        return -1;
    }
    int wait = 1, ms = -1;
    double end = 0.0;
    if (!forever) {
        if (left > 0.0) {
            double wanted = left * 1000.0;
            if (wanted > MAX_POLL_MS) {
                wanted = MAX_POLL_MS;
            }
            ms = (int)ceil(wanted);
            end = monotonic() + wanted / 1000.0;
        }
        else {
            wait = 0;
        }
    }
    if (wait && PyErr_CheckSignals() < 0) {
        return -1;
    }
    for (;;) {
        int n = 0, poll_err = 0, err = 0;
        Py_ssize_t result = 0;
        Py_BEGIN_ALLOW_THREADS
        if (wait) {
            struct pollfd pfd;
            pfd.fd = fd;
            pfd.events = events;
            pfd.revents = 0;
            n = poll(&pfd, 1, ms);
            poll_err = errno;
        }
        if (n >= 0 && syscall != NULL) {
            result = syscall(fd, arg);
            err = errno;
        }
        Py_END_ALLOW_THREADS
        if (n >= 0) {
            if (out != NULL) {
                out->result = result;
                out->err = err;
            }
            return 0;
        }
        if (poll_err != EINTR) {
            errno = poll_err;
            PyErr_SetFromErrno(PyExc_OSError);
            return -1;
        }
        if (PyErr_CheckSignals() < 0) {
            return -1;
        }
        if (!forever) {
            double rest = end - monotonic();
            if (rest < 0.0) {
                wait = 0;  /* the time is up: the caller's next step decides */
            }
            else {
                ms = (int)ceil(rest * 1000.0);
            }
        }
    }
}

/* The wait alone. */
static int
wait_ready(PyObject *self, short events, int forever, double left)
{
    return wait_then(self, events, forever, left, NULL, NULL, NULL);
}

/* The error a failed syscall's errno makes: the stdlib's own (OSError, or
   the subclass the errno maps to). */
static void
set_errno_error(int err)
{
    errno = err;
    PyErr_SetFromErrno(PyExc_OSError);
}

static int
would_block_errno(int err)
{
    return err == EAGAIN || err == EWOULDBLOCK;
}

/* Whether the exception set is a BlockingIOError; if so, it is cleared. */
static int
cleared_would_block(void)
{
    if (!PyErr_ExceptionMatches(PyExc_BlockingIOError)) {
        return 0;
    }
    PyErr_Clear();
    return 1;
}

/* The rest of the facade's _io after a first attempt that would block,
 * whose BlockingIOError (the kernel's) is the exception set: it is raised as
 * it is if the call gives up (_core.gives_up); otherwise the call waits and
 * tries again until it completes, as _core.drive runs _core.retry.  Every
 * attempt is the C method ``call`` on ``args`` (self first).
 *
 * ``when``/``have_when``: the call's deadline, if a wait before the first
 * attempt (wait_first) set it. */
static PyObject *
retry(PyObject *self, short events, PyObject *flags, PyObject *call, PyObject *const *args, Py_ssize_t nargs,
      int have_when, double when)
{
    Saved pending;
    save_error(&pending);
    Mode mode = {BLOCKING, 0.0};
    int res = get_mode_now(self, &mode);
    if (res == 0) {
        res = gives_up(&mode, flags);
    }
    if (res == 1) {
        restore_error(&pending);
        return NULL;
    }
    drop_error(&pending);
    if (res < 0) {
        return NULL;
    }
    for (;;) {
        /* _core.deadline, then the wait for the time left. */
        double left = 0.0;
        int forever = mode.kind == BLOCKING;
        if (!forever) {
            double now = monotonic();
            if (!have_when) {
                when = now + mode.timeout;
                have_when = 1;
            }
            else if (now >= when) {
                PyErr_SetString(PyExc_TimeoutError, "timed out");
                return NULL;
            }
            left = when - now;
        }
        if (wait_ready(self, events, forever, left) < 0) {
            return NULL;
        }
        PyObject *result = PyObject_Vectorcall(call, args, nargs, NULL);
        if (result != NULL || !cleared_would_block()) {
            return result;
        }
    }
}

/* One syscall, the facade's _io: the C method ``call`` on ``args`` (self
   first), tried now, and after every wait again until it completes. */
static PyObject *
io(PyObject *self, short events, PyObject *flags, PyObject *call, PyObject *const *args, Py_ssize_t nargs,
   int have_when, double when)
{
    PyObject *result = PyObject_Vectorcall(call, args, nargs, NULL);
    if (result != NULL || !PyErr_ExceptionMatches(PyExc_BlockingIOError)) {
        return result;
    }
    return retry(self, events, flags, call, args, nargs, have_when, when);
}

/* The Python method ``func`` on ``self`` and the call's own arguments: for
   call shapes and states the fast path leaves to the reference. */
static PyObject *
reference(PyObject *func, PyObject *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    Py_ssize_t nkw = kwnames == NULL ? 0 : PyTuple_GET_SIZE(kwnames);
    PyObject *small[8];
    PyObject **stack = small;
    if (nargs + nkw + 1 > 8) {
        stack = PyMem_Malloc((size_t)(nargs + nkw + 1) * sizeof(PyObject *));
        if (stack == NULL) {
            return PyErr_NoMemory();
        }
    }
    stack[0] = self;
    if (nargs + nkw > 0) {
        memcpy(stack + 1, args, (size_t)(nargs + nkw) * sizeof(PyObject *));
    }
    PyObject *result = PyObject_Vectorcall(func, stack, (size_t)nargs + 1, kwnames);
    if (stack != small) {
        PyMem_Free(stack);
    }
    return result;
}

/* The receive hint (_core.receive_hint's count): -1 with an exception set,
   -2 where the slot holds something other than an int. */
static long
get_hint(PyObject *self)
{
    PyObject *value = get_slot(self, hint_offset, str_hint);
    if (value == NULL) {
        return -1;
    }
    Py_ssize_t hint;
    if (!PyLong_CheckExact(value) || !small_value(value, &hint) || hint < 0 || hint > 1000000) {
        hint = -2;
    }
    Py_DECREF(value);
    return (long)hint;
}

/* self._hint = _core.receive_hint(hint, short) */
static int
set_hint(PyObject *self, long hint, int is_short)
{
    long next = is_short ? wait_first_count : (hint ? hint - 1 : 0);
    if (next == hint && Py_IS_TYPE(self, facade)) {
        return 0;  /* the slot holds that int already */
    }
    return set_slot(self, hint_offset, str_hint, PyLong_FromLong(next));
}

/* ``not flags``: -1 with an exception set. */
static int
no_flags(PyObject *flags)
{
    if (PyLong_CheckExact(flags)) {
        return is_zero(flags);
    }
    return PyObject_Not(flags);
}

/* The deadline of a call in this mode, and the wait before its first
   attempt (_sync_socket.socket._io with ``first``). */
static int
first_wait(PyObject *self, short events, const Mode *mode, int *have_when, double *when)
{
    if (mode->kind == TIMEOUT) {
        *when = monotonic() + mode->timeout;
        *have_when = 1;
    }
    return wait_ready(self, events, mode->kind == BLOCKING, mode->timeout);
}

/* A receive that waits for readiness before its first attempt (wait_first
 * said so: bufsize is an int > 0, there are no flags): the wait and the
 * attempt, recv() into a new bytes object of bufsize bytes as the C method
 * makes it, in one stretch without the GIL.  The attempt's errors are the
 * errno's, as the C method's; a bufsize the C method would refuse (too
 * large), or a bytes object that cannot be had, leaves the attempt to the
 * C method, after the wait. */
static PyObject *
recv_waiting_first(PyObject *self, PyObject *bufsize, const Mode *mode, PyObject *flags, PyObject *const *args,
                   Py_ssize_t nargs)
{
    int have_when = 0;
    double when = 0.0;
    int forever = mode->kind == BLOCKING;
    if (!forever) {
        when = monotonic() + mode->timeout;
        have_when = 1;
    }
    Py_ssize_t size = PyLong_AsSsize_t(bufsize);
    PyObject *data = size < 0 ? NULL : PyBytes_FromStringAndSize(NULL, size);
    if (data == NULL) {
        PyErr_Clear();
        if (wait_ready(self, POLLIN, forever, mode->timeout) < 0) {
            return NULL;
        }
        return io(self, POLLIN, flags, c_recv, args, nargs, have_when, when);
    }
    Span span = {PyBytes_AS_STRING(data), (size_t)size, 0};
    Outcome out;
    if (wait_then(self, POLLIN, forever, mode->timeout, do_recv, &span, &out) < 0) {
        Py_DECREF(data);
        return NULL;
    }
    if (out.result >= 0) {
        if (out.result != size) {
            _PyBytes_Resize(&data, out.result);  /* NULL with an exception set if it fails */
        }
        return data;
    }
    Py_DECREF(data);
    if (out.err == EINTR) {
        /* As the C method does: the handlers, then the receive again at once. */
        if (PyErr_CheckSignals() < 0) {
            return NULL;
        }
        return io(self, POLLIN, flags, c_recv, args, nargs, have_when, when);
    }
    set_errno_error(out.err);
    if (!would_block_errno(out.err)) {
        return NULL;
    }
    return retry(self, POLLIN, flags, c_recv, args, nargs, have_when, when);
}

/* -- the methods ------------------------------------------------------------ */

PyDoc_STRVAR(recv_doc,
"recv($self, bufsize, flags=0, /)\n--\n\n"
"recv(buffersize[, flags]) -> data\n\n"
"Receive up to buffersize bytes from the socket.  For the optional flags\n"
"argument, see the Unix manual.  When no data is available, block until\n"
"at least one byte is available or until the remote end is closed.  When\n"
"the remote end is closed and all data is read, return the empty string.");

static PyObject *
sock_recv(PyObject *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    if ((kwnames != NULL && PyTuple_GET_SIZE(kwnames)) || nargs < 1 || nargs > 2) {
        return reference(py_recv, self, args, nargs, kwnames);
    }
    PyObject *bufsize = args[0];
    PyObject *flags = nargs > 1 ? args[1] : zero;
    long hint = get_hint(self);
    if (hint == -1) {
        return NULL;
    }
    if (hint == -2) {
        return reference(py_recv, self, args, nargs, kwnames);
    }
    /* first = hint > 0 and _core.wait_first(hint, self._timeout, flags, bufsize) */
    Mode mode = {BLOCKING, 0.0};
    int first = 0;
    if (hint > 0) {
        int res = get_mode(self, &mode);
        if (res == -1) {
            return NULL;
        }
        if (res == -2) {
            return reference(py_recv, self, args, nargs, kwnames);
        }
        first = mode.kind != NONBLOCKING && is_zero(flags) && is_positive(bufsize);
    }
    /* The call's own arguments: flags only if given (the same default). */
    PyObject *stack[3] = {self, bufsize, flags};
    PyObject *data = first ? recv_waiting_first(self, bufsize, &mode, flags, stack, nargs + 1)
                           : io(self, POLLIN, flags, c_recv, stack, nargs + 1, 0, 0.0);
    if (data == NULL) {
        return NULL;
    }
    /* self._hint = _core.receive_hint(hint, len(data) < bufsize and not flags) */
    int is_short;
    Py_ssize_t want;
    if (PyBytes_CheckExact(data) && PyLong_CheckExact(bufsize) &&
        ((want = PyLong_AsSsize_t(bufsize)) != -1 || !PyErr_Occurred())) {
        is_short = PyBytes_GET_SIZE(data) < want;
    }
    else {
        PyErr_Clear();
        Py_ssize_t length = PyObject_Length(data);
        PyObject *size = length < 0 ? NULL : PyLong_FromSsize_t(length);
        is_short = size == NULL ? -1 : PyObject_RichCompareBool(size, bufsize, Py_LT);
        Py_XDECREF(size);
    }
    if (is_short > 0) {
        is_short = no_flags(flags);
    }
    if (is_short < 0 || set_hint(self, hint, is_short) < 0) {
        Py_DECREF(data);
        return NULL;
    }
    return data;
}

/* _core.into_size: how many bytes recv_into(buffer, nbytes) asks for; -1
   if the native call would refuse the arguments; -2 with an exception set
   (a released memoryview). */
static Py_ssize_t
into_size(PyObject *buffer, PyObject *nbytes)
{
    if (!PyLong_CheckExact(nbytes)) {
        return -1;
    }
    int overflow;
    long long n = PyLong_AsLongLongAndOverflow(nbytes, &overflow);
    if (overflow || n < 0) {
        return -1;  /* negative, or more than any buffer holds */
    }
    Py_ssize_t size;
    if (PyByteArray_CheckExact(buffer)) {
        size = PyByteArray_GET_SIZE(buffer);
    }
    else if (PyMemoryView_Check(buffer)) {
        PyMemoryViewObject *view = (PyMemoryViewObject *)buffer;
        if ((view->flags & _Py_MEMORYVIEW_RELEASED) || (view->mbuf->flags & _Py_MANAGED_BUFFER_RELEASED)) {
            PyErr_SetString(PyExc_ValueError, "operation forbidden on released memoryview object");
            return -2;
        }
        if (view->view.readonly || !(view->flags & (_Py_MEMORYVIEW_C | _Py_MEMORYVIEW_SCALAR))) {
            return -1;
        }
        size = view->view.len;
    }
    else {
        return -1;
    }
    if (n > (long long)size) {
        return -1;
    }
    return n ? (Py_ssize_t)n : size;
}

PyDoc_STRVAR(recv_into_doc,
"recv_into($self, buffer, nbytes=0, flags=0)\n--\n\n"
"recv_into(buffer, [nbytes[, flags]]) -> nbytes_read\n\n"
"A version of recv() that stores its data into a buffer rather than creating\n"
"a new string.  Receive up to buffersize bytes from the socket.  If buffersize\n"
"is not specified (or 0), receive up to the size available in the given buffer.\n\n"
"See recv() for documentation about the flags.");

static const char *const recv_into_names[] = {"buffer", "nbytes", "flags"};

static PyObject *
sock_recv_into(PyObject *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    /* buffer, nbytes=0, flags=0, positional or by keyword; anything else
       is the reference's to refuse. */
    PyObject *params[3] = {NULL, zero, zero};
    Py_ssize_t given = nargs;  /* the native call gets the parameters up to the last one given */
    if (nargs > 3) {
        return reference(py_recv_into, self, args, nargs, kwnames);
    }
    for (Py_ssize_t i = 0; i < nargs; i++) {
        params[i] = args[i];
    }
    Py_ssize_t nkw = kwnames == NULL ? 0 : PyTuple_GET_SIZE(kwnames);
    for (Py_ssize_t i = 0; i < nkw; i++) {
        PyObject *key = PyTuple_GET_ITEM(kwnames, i);
        Py_ssize_t at = 0;
        while (at < 3 && PyUnicode_CompareWithASCIIString(key, recv_into_names[at]) != 0) {
            at++;
        }
        if (at == 3 || at < nargs) {
            return reference(py_recv_into, self, args, nargs, kwnames);  /* unknown, or given twice */
        }
        params[at] = args[nargs + i];
        if (at + 1 > given) {
            given = at + 1;
        }
    }
    if (params[0] == NULL) {
        return reference(py_recv_into, self, args, nargs, kwnames);
    }
    PyObject *buffer = params[0], *nbytes = params[1], *flags = params[2];
    long hint = get_hint(self);
    if (hint == -1) {
        return NULL;
    }
    if (hint == -2) {
        return reference(py_recv_into, self, args, nargs, kwnames);
    }
    Py_ssize_t want = into_size(buffer, nbytes);
    if (want == -2) {
        return NULL;
    }
    /* first = hint > 0 and _core.wait_first(hint, self._timeout, flags, want) */
    Mode mode = {BLOCKING, 0.0};
    int first = 0;
    if (hint > 0) {
        int res = get_mode(self, &mode);
        if (res == -1) {
            return NULL;
        }
        if (res == -2) {
            return reference(py_recv_into, self, args, nargs, kwnames);
        }
        first = mode.kind != NONBLOCKING && is_zero(flags) && want > 0;
    }
    int have_when = 0;
    double when = 0.0;
    if (first && first_wait(self, POLLIN, &mode, &have_when, &when) < 0) {
        return NULL;
    }
    PyObject *stack[4] = {self, buffer, nbytes, flags};
    PyObject *count = io(self, POLLIN, flags, c_recv_into, stack, given + 1, have_when, when);
    if (count == NULL) {
        return NULL;
    }
    /* self._hint = _core.receive_hint(hint, count < want and not flags) */
    Py_ssize_t got = PyLong_AsSsize_t(count);
    if (got == -1 && PyErr_Occurred()) {
        Py_DECREF(count);
        return NULL;
    }
    int is_short = got < want;
    if (is_short) {
        is_short = no_flags(flags);
    }
    if (is_short < 0 || set_hint(self, hint, is_short) < 0) {
        Py_DECREF(count);
        return NULL;
    }
    return count;
}

PyDoc_STRVAR(send_doc,
"send($self, data, flags=0, /)\n--\n\n"
"send(data[, flags]) -> count\n\n"
"Send a data string to the socket.  For the optional flags\n"
"argument, see the Unix manual.  Return the number of bytes\n"
"sent; this may be less than len(data) if the network is busy.");

static PyObject *
sock_send(PyObject *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    if ((kwnames != NULL && PyTuple_GET_SIZE(kwnames)) || nargs < 1 || nargs > 2) {
        return reference(py_send, self, args, nargs, kwnames);
    }
    PyObject *stack[3] = {self, args[0], nargs > 1 ? args[1] : zero};
    return io(self, POLLOUT, stack[2], c_send, stack, nargs + 1, 0, 0.0);
}

/* _core.report_sent: the send's progress, on the exception set (which stays set). */
static void
report(Py_ssize_t sent)
{
    Saved exc;
    save_error(&exc);
    PyObject *count = PyLong_FromSsize_t(sent);
    if (count != NULL && PyObject_SetAttr(exc.value, str_bytes_sent, count) == 0) {
        Py_DECREF(count);
        restore_error(&exc);
        return;
    }
    Py_XDECREF(count);
    chain_error(&exc);
}

/* The bytes-like ``data`` as one C-contiguous buffer, as _core.sendall
   takes it: memoryview(data), its C-contiguity check, cast("B"). */
static int
get_octets(PyObject *data, Py_buffer *view)
{
    if (PyObject_GetBuffer(data, view, PyBUF_FULL_RO) < 0) {
        if (PyErr_ExceptionMatches(PyExc_TypeError)) {
            /* The stdlib's error, with nothing chained. */
            PyErr_Clear();
            PyErr_Format(PyExc_TypeError, "a bytes-like object is required, not '%.200s'", Py_TYPE(data)->tp_name);
        }
        return -1;
    }
    if (!PyBuffer_IsContiguous(view, 'C')) {
        PyBuffer_Release(view);
        PyErr_SetString(PyExc_BufferError, "memoryview: underlying buffer is not C-contiguous");
        return -1;
    }
    return 0;
}

PyDoc_STRVAR(sendall_doc,
"sendall($self, data, flags=0, /)\n--\n\n"
"sendall(data[, flags])\n\n"
"Send a data string to the socket.  For the optional flags\n"
"argument, see the Unix manual.  This calls send() repeatedly\n"
"until all data is sent.  If an error occurs, the exception it\n"
"raises carries bytes_sent, how many bytes were sent.");

static PyObject *
sock_sendall(PyObject *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    if ((kwnames != NULL && PyTuple_GET_SIZE(kwnames)) || nargs < 1 || nargs > 2) {
        return reference(py_sendall, self, args, nargs, kwnames);
    }
    PyObject *data = args[0];
    PyObject *flags = nargs > 1 ? args[1] : zero;

    /* _core.send_first: most sends of a message complete here. */
    PyObject *stack[3] = {self, data, flags};
    Py_ssize_t sent = 0;
    PyObject *result = PyObject_Vectorcall(c_send, stack, nargs + 1, NULL);
    if (result == NULL) {
        if (!cleared_would_block()) {
            return NULL;
        }
    }
    else {
        sent = PyLong_AsSsize_t(result);
        Py_DECREF(result);
        if (sent == -1 && PyErr_Occurred()) {
            return NULL;
        }
        Py_ssize_t total;
        if (PyBytes_CheckExact(data)) {
            total = PyBytes_GET_SIZE(data);
        }
        else if (PyByteArray_CheckExact(data)) {
            total = PyByteArray_GET_SIZE(data);
        }
        else {
            Py_buffer whole;  /* _core.nbytes */
            if (PyObject_GetBuffer(data, &whole, PyBUF_FULL_RO) < 0) {
                return NULL;
            }
            total = whole.len;
            PyBuffer_Release(&whole);
        }
        if (sent == total) {
            Py_RETURN_NONE;
        }
    }

    /* The rest: _core.sendall run by _core.drive.  A short or refused send
       means the send buffer is full, so each further attempt waits for room
       first; every exception from here on carries bytes_sent. */
    Mode mode = {BLOCKING, 0.0};
    if (get_mode_now(self, &mode) < 0) {
        return NULL;
    }
    int nowait = gives_up(&mode, flags);
    if (nowait < 0) {
        return NULL;
    }
    Py_buffer octets;
    if (get_octets(data, &octets) < 0) {
        return NULL;
    }
    Py_ssize_t done = sent;
    int have_when = 0;
    double when = 0.0;
    /* With flags an int (or none), which the first attempt took, the further
       sends are send() itself, as the C method makes it (its errors are the
       errno's, its EINTR is retried at once after the handlers ran); other
       flags objects go to the C method each time, as the Python method does. */
    int direct = PyLong_CheckExact(flags);
    int direct_flags = direct ? (int)PyLong_AsLong(flags) : 0;
    for (;;) {
        if (nowait) {
            would_block();
            break;
        }
        double left = 0.0;
        int forever = mode.kind == BLOCKING;
        if (!forever) {
            double now = monotonic();
            if (!have_when) {
                when = now + mode.timeout;
                have_when = 1;
            }
            else if (now >= when) {
                PyErr_SetString(PyExc_TimeoutError, "timed out");
                break;
            }
            left = when - now;
        }
        Py_ssize_t n;
        if (direct) {
            /* The wait and the send in one stretch without the GIL. */
            Span span = {(char *)octets.buf + done, (size_t)(octets.len - done), direct_flags};
            Outcome out;
            if (wait_then(self, POLLOUT, forever, left, do_send, &span, &out) < 0) {
                break;
            }
            while (out.result < 0 && out.err == EINTR) {
                /* As the C method does: the handlers, then the send again at once. */
                if (PyErr_CheckSignals() < 0 || wait_then(self, POLLOUT, 0, 0.0, do_send, &span, &out) < 0) {
                    goto failed;
                }
            }
            if (out.result < 0) {
                if (would_block_errno(out.err)) {
                    continue;
                }
                set_errno_error(out.err);
                break;
            }
            n = out.result;
        }
        else {
            if (wait_ready(self, POLLOUT, forever, left) < 0) {
                break;
            }
            PyObject *rest = PyMemoryView_FromMemory((char *)octets.buf + done, octets.len - done, PyBUF_READ);
            if (rest == NULL) {
                break;
            }
            PyObject *call[3] = {self, rest, flags};
            result = PyObject_Vectorcall(c_send, call, nargs + 1, NULL);
            Py_DECREF(rest);
            if (result == NULL) {
                if (cleared_would_block()) {
                    continue;
                }
                break;
            }
            n = PyLong_AsSsize_t(result);
            Py_DECREF(result);
            if (n == -1 && PyErr_Occurred()) {
                break;
            }
        }
        done += n;
        if (done >= octets.len) {
            PyBuffer_Release(&octets);
            Py_RETURN_NONE;
        }
    }
failed:
    report(done);
    PyBuffer_Release(&octets);
    return NULL;
}

/* -- installing ------------------------------------------------------------- */

static PyMethodDef recv_def = {"recv", (PyCFunction)(void (*)(void))sock_recv, METH_FASTCALL | METH_KEYWORDS, recv_doc};
static PyMethodDef recv_into_def = {
    "recv_into", (PyCFunction)(void (*)(void))sock_recv_into, METH_FASTCALL | METH_KEYWORDS, recv_into_doc};
static PyMethodDef send_def = {"send", (PyCFunction)(void (*)(void))sock_send, METH_FASTCALL | METH_KEYWORDS, send_doc};
static PyMethodDef sendall_def = {
    "sendall", (PyCFunction)(void (*)(void))sock_sendall, METH_FASTCALL | METH_KEYWORDS, sendall_doc};

/* The offset of a T_OBJECT_EX slot of ``cls``, from its member descriptor. */
static Py_ssize_t
slot_offset(PyTypeObject *cls, const char *name)
{
    PyObject *descr = PyDict_GetItemString(cls->tp_dict, name);
    if (descr == NULL || !Py_IS_TYPE(descr, &PyMemberDescr_Type)) {
        PyErr_Format(PyExc_TypeError, "%.200s has no slot %s", cls->tp_name, name);
        return -1;
    }
    PyMemberDef *member = ((PyMemberDescrObject *)descr)->d_member;
    if (member->type != Py_T_OBJECT_EX || (member->flags & Py_READONLY)) {
        PyErr_Format(PyExc_TypeError, "%.200s.%s is not a writable object slot", cls->tp_name, name);
        return -1;
    }
    return member->offset;
}

/* The Python function ``name`` defined by ``cls`` itself, a new reference. */
static PyObject *
own_function(PyTypeObject *cls, const char *name)
{
    PyObject *func = PyDict_GetItemString(cls->tp_dict, name);
    if (func == NULL || !PyFunction_Check(func)) {
        PyErr_Format(PyExc_TypeError, "%.200s.%s is not a Python function", cls->tp_name, name);
        return NULL;
    }
    Py_INCREF(func);
    return func;
}

static int
set_once(PyObject **where, PyObject *value)
{
    if (value == NULL) {
        return -1;
    }
    Py_XSETREF(*where, value);
    return 0;
}

PyDoc_STRVAR(methods_doc,
"methods($module, cls, socket_type, wait_first, /)\n--\n\n"
"The C methods for ``cls`` (asock.sync.socket), by name, to bind to it.\n\n"
"``cls`` subclasses ``socket_type`` (_socket.socket), keeps the mode in its\n"
"``_timeout`` slot and the receive hint in ``_hint``, and defines the Python\n"
"methods recv, recv_into, send and sendall: the reference implementations,\n"
"which the C ones call for call shapes and states they leave to them.\n"
"``wait_first`` is _core.WAIT_FIRST.  Call it before replacing the Python\n"
"methods; a later call (a reload of the module that defines ``cls``)\n"
"moves the C methods' state to the new class.");

static PyObject *
methods(PyObject *module, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    if (nargs != 3 || (kwnames != NULL && PyTuple_GET_SIZE(kwnames))) {
        PyErr_SetString(PyExc_TypeError, "methods(cls, socket_type, wait_first) takes 3 positional arguments");
        return NULL;
    }
    PyObject *cls = args[0], *base = args[1];
    if (!PyType_Check(cls) || !PyType_Check(base) || !PyType_IsSubtype((PyTypeObject *)cls, (PyTypeObject *)base)) {
        PyErr_SetString(PyExc_TypeError, "methods() takes a subclass of the socket type");
        return NULL;
    }
    long count = PyLong_AsLong(args[2]);
    if (count == -1 && PyErr_Occurred()) {
        return NULL;
    }
    PyTypeObject *type = (PyTypeObject *)cls;
    Py_ssize_t timeout_at = slot_offset(type, "_timeout");
    Py_ssize_t hint_at = timeout_at < 0 ? -1 : slot_offset(type, "_hint");
    if (hint_at < 0) {
        return NULL;
    }
    if (set_once(&py_recv, own_function(type, "recv")) < 0 ||
        set_once(&py_recv_into, own_function(type, "recv_into")) < 0 ||
        set_once(&py_send, own_function(type, "send")) < 0 ||
        set_once(&py_sendall, own_function(type, "sendall")) < 0 ||
        set_once(&c_recv, PyObject_GetAttrString(base, "recv")) < 0 ||
        set_once(&c_recv_into, PyObject_GetAttrString(base, "recv_into")) < 0 ||
        set_once(&c_send, PyObject_GetAttrString(base, "send")) < 0 ||
        set_once(&c_fileno, PyObject_GetAttrString(base, "fileno")) < 0 ||
        set_once(&str_timeout, PyUnicode_InternFromString("_timeout")) < 0 ||
        set_once(&str_hint, PyUnicode_InternFromString("_hint")) < 0 ||
        set_once(&str_bytes_sent, PyUnicode_InternFromString("bytes_sent")) < 0 ||
        set_once(&zero, PyLong_FromLong(0)) < 0) {
        return NULL;
    }
    PyObject *result = PyDict_New();
    if (result == NULL) {
        return NULL;
    }
    PyMethodDef *defs[] = {&recv_def, &recv_into_def, &send_def, &sendall_def};
    for (size_t i = 0; i < sizeof(defs) / sizeof(defs[0]); i++) {
        PyObject *descr = PyDescr_NewMethod(type, defs[i]);
        if (descr == NULL || PyDict_SetItemString(result, defs[i]->ml_name, descr) < 0) {
            Py_XDECREF(descr);
            Py_DECREF(result);
            return NULL;
        }
        Py_DECREF(descr);
    }
    Py_INCREF(type);
    Py_XSETREF(facade, type);
    timeout_offset = timeout_at;
    hint_offset = hint_at;
    wait_first_count = count;
    return result;
}

/* -- the async socket's hot path --------------------------------------------
 *
 * asock.socket's recv, recv_into and sendall stay coroutines in Python
 * (asock/_async_socket.py), and do their waiting in their own frame; each
 * of their steps is one call of a step function, these C ones or their
 * Python twins there (_py_recv_now, ...), which stay the reference.  A C
 * step does what its twin does for the hot case, with the socket's slots
 * read and written in place and the syscall made directly on the
 * descriptor; every other case (an argument, a state or a class it does not
 * expect) it hands to the twin, before anything has happened, so both give
 * the same outcome by construction.
 *
 * The syscalls run with the GIL held: the descriptor is always non-blocking,
 * so they never wait, and releasing and retaking the GIL would cost more
 * than the call.  What a failed one raises is what the C method raises: the
 * errno's error (PyErr_SetFromErrno), or after EINTR the signal handlers'
 * exception, else the syscall again.
 *
 * Nothing here imports asyncio: async_steps() is handed what it needs by
 * asock/_async_socket.py, at that module's import.
 */

/* _core.READ / WRITE, and the _watching bits of _async_socket (_ENDED, _ECHO). */
#define A_READ 1
#define A_WRITE 2
static int a_echo_shift;

static PyTypeObject *async_type;  /* asock.socket */
static PyObject *c_socket_type;   /* _socket.socket */
static PyObject *small_ints[3];   /* 0, READ, WRITE */
static Py_ssize_t a_fd, a_hint, a_loop, a_reader, a_reading, a_sock, a_thread, a_ticks, a_timeout, a_watching,
    a_writer, a_writing;
static PyObject *a_again, *a_slow;     /* _core.AGAIN, _async_socket._SLOW */
static long a_budget, a_wait_first, a_nosignal;
static int a_slow_lookup;              /* _async_socket._SLOW_LOOKUP */
static PyObject *a_c_recv, *a_c_recv_into;  /* what a read waiter names (_reading) */
static PyObject *a_get_running_loop;
static PyTypeObject *read_watch_type, *write_watch_type;
static PyObject *base_create_future, *base_is_running, *future_type, *kw_loop;
/* The twins. */
static PyObject *tw_recv_now, *tw_recv_again, *tw_recv_into_now, *tw_recv_into_again, *tw_sendall_now,
    *tw_on_readable, *tw_on_writable, *tw_on_ready_once, *tw_on_own_loop, *tw_enter, *tw_arm;
static PyObject *str_create_future, *str_is_running, *str_thread_id, *str_done, *str_set_result, *str_arm,
    *str_unwatch;

/* The names whose meaning a subclass could change: the slots the steps
   read and write, and the method they do inline. */
static const char *const async_names[] = {
    "_fd", "_hint", "_loop", "_reader", "_reading", "_sock", "_thread", "_ticks", "_timeout", "_watching",
    "_writer", "_writing", "_arm", NULL};

/* Subclasses of asock.socket found to keep every one of async_names as it
   is (held, so that a type freed and another allocated at its address
   cannot pass for it). */
#define KNOWN_SUBCLASSES 8
static PyTypeObject *known_subclasses[KNOWN_SUBCLASSES];

static int
same_as_base(PyTypeObject *type)
{
    if (!PyType_IsSubtype(type, async_type) || type->tp_getattro != async_type->tp_getattro ||
        type->tp_setattro != async_type->tp_setattro) {
        return 0;
    }
    for (const char *const *name = async_names; *name != NULL; name++) {
        PyObject *key = PyUnicode_InternFromString(*name);
        if (key == NULL) {
            PyErr_Clear();
            return 0;
        }
        int same = _PyType_Lookup(type, key) == _PyType_Lookup(async_type, key);
        Py_DECREF(key);
        if (!same) {
            return 0;
        }
    }
    return 1;
}

/* Whether the steps may read ``self``'s slots in place: an asock.socket, or
   an instance of a subclass that keeps every slot and _arm as they are. */
static int
known(PyObject *self)
{
    PyTypeObject *type = Py_TYPE(self);
    if (type == async_type) {
        return 1;
    }
    for (int i = 0; i < KNOWN_SUBCLASSES && known_subclasses[i] != NULL; i++) {
        if (known_subclasses[i] == type) {
            return 1;
        }
    }
    if (!same_as_base(type)) {
        return 0;
    }
    for (int i = 0; i < KNOWN_SUBCLASSES; i++) {
        if (known_subclasses[i] == NULL) {
            Py_INCREF(type);
            known_subclasses[i] = type;
            break;
        }
    }
    return 1;
}

/* A slot's value, borrowed; NULL if unset. */
#define SLOT(self, offset) (*(PyObject **)((char *)(self) + (offset)))

/* self.<slot> = value (a new reference, stolen; NULL: -1, the error set). */
static int
put(PyObject *self, Py_ssize_t offset, PyObject *value)
{
    if (value == NULL) {
        return -1;
    }
    PyObject **slot = (PyObject **)((char *)self + offset);
    PyObject *old = *slot;
    *slot = value;
    Py_XDECREF(old);
    return 0;
}

/* An int slot's value, if it holds a small exact int. */
static inline int
int_slot(PyObject *self, Py_ssize_t offset, Py_ssize_t *value)
{
    PyObject *v = SLOT(self, offset);
    return v != NULL && PyLong_CheckExact(v) && small_value(v, value);
}

/* The twin ``func`` on the step's own arguments. */
static PyObject *
twin(PyObject *func, PyObject *const *args, Py_ssize_t nargs)
{
    return PyObject_Vectorcall(func, args, nargs, NULL);
}

/* fut.done(): 1, 0, or -1 with an exception set. */
static int
future_done(PyObject *fut)
{
    PyObject *res = PyObject_VectorcallMethod(str_done, &fut, 1 | PY_VECTORCALL_ARGUMENTS_OFFSET, NULL);
    if (res == NULL) {
        return -1;
    }
    int done = PyObject_IsTrue(res);
    Py_DECREF(res);
    return done;
}

/* ``waiter is not None and not waiter.done()``: 1, 0, or -1. */
static int
waiting(PyObject *waiter)
{
    if (waiter == NULL || waiter == Py_None) {
        return 0;
    }
    int done = future_done(waiter);
    return done < 0 ? -1 : !done;
}

/* Looks up loop.<name>: 1 when it is the function ``base`` of the loop's
   class (nothing shadows it), else 0 with *callable what to call, a new
   reference (taking the loop as its first argument where *unbound is
   set); -1 with an exception set.  As a method call looks it up: no bound
   method is made where the class's own function is found. */
static int
find_method(PyObject *loop, PyObject *name, PyObject *base, PyObject **callable, int *unbound)
{
    PyObject *meth = NULL;
#if PY_VERSION_HEX < 0x030D0000
    *unbound = _PyObject_GetMethod(loop, name, &meth);
#else
    *unbound = 0;
    meth = PyObject_GetAttr(loop, name);
    if (meth != NULL && PyMethod_Check(meth) && PyMethod_GET_SELF(meth) == loop) {
        PyObject *func = Py_NewRef(PyMethod_GET_FUNCTION(meth));
        Py_SETREF(meth, func);
        *unbound = 1;
    }
#endif
    *callable = NULL;
    if (meth == NULL) {
        return -1;
    }
    if (*unbound && meth == base) {
        Py_DECREF(meth);
        return 1;
    }
    *callable = meth;
    return 0;
}

/* loop.<name>(), found by find_method. */
static PyObject *
call_found(PyObject *loop, PyObject *callable, int unbound)
{
    PyObject *result = unbound ? PyObject_Vectorcall(callable, &loop, 1, NULL) : PyObject_CallNoArgs(callable);
    Py_DECREF(callable);
    return result;
}

/* loop.create_future(): asyncio's own is futures.Future(loop=self), made
   here without the Python-level call. */
static PyObject *
new_future(PyObject *loop)
{
    PyObject *callable;
    int unbound;
    int plain = find_method(loop, str_create_future, base_create_future, &callable, &unbound);
    if (plain < 0) {
        return NULL;
    }
    if (plain) {
        PyObject *args[2] = {NULL, loop};
        return PyObject_Vectorcall(future_type, args + 1, 0 | PY_VECTORCALL_ARGUMENTS_OFFSET, kw_loop);
    }
    return call_found(loop, callable, unbound);
}

/* bool(loop.is_running()): asyncio's own is ``self._thread_id is not None``. */
static int
loop_is_running(PyObject *loop)
{
    PyObject *callable;
    int unbound;
    int plain = find_method(loop, str_is_running, base_is_running, &callable, &unbound);
    if (plain < 0) {
        return -1;
    }
    PyObject *res = plain ? PyObject_GetAttr(loop, str_thread_id) : call_found(loop, callable, unbound);
    if (res == NULL) {
        return -1;
    }
    int running = plain ? res != Py_None : PyObject_IsTrue(res);
    Py_DECREF(res);
    return running;
}

/* _enter's check that the call runs on the socket's bound loop, without
   binding it (where it fails, the twins' _SLOW has _enter do it): 1, 0, or
   -1 with an exception set. */
static int
on_its_loop(PyObject *self)
{
    PyObject *loop = SLOT(self, a_loop);
    if (loop == NULL || loop == Py_None) {
        return 0;
    }
    if (!a_slow_lookup) {
        PyObject *running = PyObject_Vectorcall(a_get_running_loop, NULL, 0, NULL);
        if (running == NULL) {
            return -1;
        }
        int same = running == loop;
        Py_DECREF(running);
        return same;
    }
    /* self._thread == get_ident() and loop.is_running() */
    PyObject *thread = SLOT(self, a_thread);
    if (thread == NULL || !PyLong_CheckExact(thread)) {
        return 0;
    }
    unsigned long ident = PyLong_AsUnsignedLong(thread);
    if (ident == (unsigned long)-1 && PyErr_Occurred()) {
        PyErr_Clear();  /* (not an ident: never this thread's) */
        return 0;
    }
    if (ident != PyThread_get_thread_ident()) {
        return 0;
    }
    return loop_is_running(loop);
}

/* _arm(direction, what), inline where nothing stands in the way (the
   descriptor open, no waiter, the direction registered); else the method,
   which registers, or raises as it raises.  0, or -1 with an exception set. */
static int
arm(PyObject *self, int direction, PyObject *what, int checked)
{
    Py_ssize_t fd, watching;
    Py_ssize_t waiter_at = direction == A_READ ? a_reader : a_writer;
    /* ``checked``: the caller found no waiter, and nothing ran since. */
    int busy = checked ? 0 : waiting(SLOT(self, waiter_at));
    if (busy < 0) {
        return -1;
    }
    PyObject *loop = SLOT(self, a_loop);
    if (busy || loop == NULL || loop == Py_None || !int_slot(self, a_fd, &fd) || fd < 0 ||
        !int_slot(self, a_watching, &watching) || !(watching & direction)) {
        PyObject *args[3] = {self, direction == A_READ ? small_ints[A_READ] : small_ints[A_WRITE], what};
        PyObject *fut = PyObject_VectorcallMethod(str_arm, args, 3, NULL);
        Py_XDECREF(fut);
        return fut == NULL ? -1 : 0;
    }
    PyObject *fut = new_future(loop);
    if (fut == NULL) {
        return -1;
    }
    put(self, waiter_at, fut);
    Py_INCREF(what);
    put(self, direction == A_READ ? a_reading : a_writing, what);
    Py_INCREF(small_ints[0]);
    put(self, a_ticks, small_ints[0]);
    return 0;
}

/* -1, or the ticks and the hint when the receive steps can take the call
   (the mode blocking, the budget not used up, the slots as they set them). */
static int
receive_state(PyObject *self, Py_ssize_t *ticks, Py_ssize_t *hint)
{
    PyObject *sock = SLOT(self, a_sock);
    if (!int_slot(self, a_ticks, ticks) || !int_slot(self, a_hint, hint) || SLOT(self, a_timeout) != Py_None ||
        sock == NULL || !PyObject_TypeCheck(sock, (PyTypeObject *)c_socket_type)) {
        return -1;
    }
    return 0;
}

/* recv(fd, bufsize) into a new bytes object, as the C method makes it: the
   data; NULL with *again set when it would block; NULL with an exception
   set. */
static PyObject *
recv_bytes(PyObject *sock, Py_ssize_t size, int *again)
{
    int fd = socket_fd(sock);
    if (fd == -2) {
        return NULL;
    }
    PyObject *data = PyBytes_FromStringAndSize(NULL, size);
    if (data == NULL) {
        return NULL;
    }
    for (;;) {
        Py_ssize_t n = recv(fd, PyBytes_AS_STRING(data), (size_t)size, 0);
        if (n >= 0) {
            if (n != size) {
                _PyBytes_Resize(&data, n);
            }
            return data;
        }
        int err = errno;
        if (err == EINTR) {
            if (PyErr_CheckSignals() < 0) {
                break;
            }
            continue;
        }
        if (would_block_errno(err)) {
            *again = 1;
        }
        else {
            set_errno_error(err);
        }
        break;
    }
    Py_DECREF(data);
    return NULL;
}

/* recv_into's syscall into ``view``'s first ``size`` bytes: the count as an
   int; NULL with *again set when it would block; NULL with an exception. */
static PyObject *
recv_buffer(PyObject *sock, char *buf, Py_ssize_t size, int *again)
{
    int fd = socket_fd(sock);
    if (fd == -2) {
        return NULL;
    }
    for (;;) {
        Py_ssize_t n = recv(fd, buf, (size_t)size, 0);
        if (n >= 0) {
            return PyLong_FromSsize_t(n);
        }
        int err = errno;
        if (err == EINTR) {
            if (PyErr_CheckSignals() < 0) {
                return NULL;
            }
            continue;
        }
        if (would_block_errno(err)) {
            *again = 1;
            return NULL;
        }
        set_errno_error(err);
        return NULL;
    }
}

/* self._hint = _core.receive_hint(hint, short), where hint >= 0. */
static void
update_hint(PyObject *self, Py_ssize_t hint, int is_short)
{
    if (hint < 0) {
        return;
    }
    Py_ssize_t next = is_short ? a_wait_first : (hint ? hint - 1 : 0);
    if (next != hint) {
        put(self, a_hint, PyLong_FromSsize_t(next));  /* a small int: cannot fail */
    }
}

/* A positive exact int that fits: its value, else 0. */
static Py_ssize_t
positive(PyObject *v)
{
    Py_ssize_t n;
    if (!PyLong_CheckExact(v)) {
        return 0;
    }
    if (small_value(v, &n)) {
        return n > 0 ? n : 0;
    }
    n = PyLong_AsSsize_t(v);
    if (n == -1 && PyErr_Occurred()) {
        PyErr_Clear();
        return 0;
    }
    return n > 0 ? n : 0;
}

/* The readiness checks every first step makes, in the twin's order: 1 when
   the step goes on, 0 when it returns _SLOW, -1 with an exception set. */
static int
may_go_on(PyObject *self, Py_ssize_t ticks)
{
    if (ticks >= a_budget) {
        return 0;
    }
    int res = on_its_loop(self);
    if (res <= 0) {
        return res;
    }
    res = waiting(SLOT(self, a_reader));
    return res < 0 ? -1 : !res;
}

static PyObject *
step_recv_now(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    Py_ssize_t ticks, hint, size;
    if (nargs != 3 || !known(args[0]) || !is_zero(args[2]) || (size = positive(args[1])) == 0 ||
        receive_state(args[0], &ticks, &hint) < 0) {
        return twin(tw_recv_now, args, nargs);
    }
    PyObject *self = args[0];
    int res = may_go_on(self, ticks);
    if (res <= 0) {
        return res < 0 ? NULL : Py_NewRef(a_slow);
    }
    if (hint <= 0) {
        int again = 0;
        PyObject *data = recv_bytes(SLOT(self, a_sock), size, &again);
        if (data != NULL) {
            put(self, a_ticks, PyLong_FromSsize_t(ticks + 1));
            update_hint(self, hint, PyBytes_GET_SIZE(data) < size);
            return data;
        }
        if (!again) {
            return NULL;
        }
    }
    if (arm(self, A_READ, a_c_recv, 1) < 0) {
        return NULL;
    }
    return Py_NewRef(a_again);
}

static PyObject *
step_recv_again(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    Py_ssize_t ticks, hint, size;
    if (nargs != 3 || !known(args[0]) || !is_zero(args[2]) || (size = positive(args[1])) == 0 ||
        receive_state(args[0], &ticks, &hint) < 0) {
        return twin(tw_recv_again, args, nargs);
    }
    PyObject *self = args[0];
    int again = 0;
    PyObject *data = recv_bytes(SLOT(self, a_sock), size, &again);
    if (data != NULL) {
        update_hint(self, hint, PyBytes_GET_SIZE(data) < size);
        return data;
    }
    if (!again || arm(self, A_READ, a_c_recv, 0) < 0) {
        return NULL;
    }
    return Py_NewRef(a_again);
}

/* The buffer recv_into's native call would write to, as it takes it ("w*"),
   and how many bytes it asks for: 0, or -1 where the step leaves the call
   to the twin (nothing set). */
static int
into_view(PyObject *buffer, PyObject *nbytes, Py_buffer *view, Py_ssize_t *size)
{
    Py_ssize_t n;
    if (!PyLong_CheckExact(nbytes) || !small_value(nbytes, &n) || n < 0) {
        return -1;
    }
    if (PyObject_GetBuffer(buffer, view, PyBUF_WRITABLE) < 0) {
        PyErr_Clear();
        return -1;
    }
    *size = n ? n : view->len;
    if (!PyBuffer_IsContiguous(view, 'C') || n > view->len || *size == 0) {
        PyBuffer_Release(view);  /* (an empty receive: the native call's own rules) */
        return -1;
    }
    return 0;
}

/* recv_into's steps: args are (self, buffer, nbytes, flags, want). */
static int
into_args(PyObject *const *args, Py_ssize_t nargs, Py_ssize_t *ticks, Py_ssize_t *hint, Py_ssize_t *want)
{
    if (nargs != 5 || !known(args[0]) || !is_zero(args[3]) || !PyLong_CheckExact(args[4]) ||
        !small_value(args[4], want) || receive_state(args[0], ticks, hint) < 0) {
        return -1;
    }
    return 0;
}

static PyObject *
into_attempt(PyObject *self, PyObject *const *args, Py_ssize_t hint, Py_ssize_t want, Py_ssize_t ticks, int *again,
             int *left)
{
    Py_buffer view;
    Py_ssize_t size;
    if (into_view(args[1], args[2], &view, &size) < 0) {
        *left = 1;
        return NULL;
    }
    PyObject *count = recv_buffer(SLOT(self, a_sock), (char *)view.buf, size, again);
    PyBuffer_Release(&view);
    if (count != NULL) {
        if (ticks >= 0) {  /* a first attempt: it counts towards the budget */
            put(self, a_ticks, PyLong_FromSsize_t(ticks + 1));
        }
        update_hint(self, hint, PyLong_AsSsize_t(count) < want);
    }
    return count;
}

static PyObject *
step_recv_into_now(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    Py_ssize_t ticks, hint, want;
    if (into_args(args, nargs, &ticks, &hint, &want) < 0) {
        return twin(tw_recv_into_now, args, nargs);
    }
    PyObject *self = args[0];
    int res = may_go_on(self, ticks);
    if (res <= 0) {
        return res < 0 ? NULL : Py_NewRef(a_slow);
    }
    if (!(hint > 0 && want > 0)) {
        int again = 0, left = 0;
        PyObject *count = into_attempt(self, args, hint, want, ticks, &again, &left);
        if (count != NULL || (!again && !left)) {
            return count;
        }
        if (left) {
            /* A buffer the step leaves to the native call: the twin from
               the start (the checks so far have changed nothing). */
            return twin(tw_recv_into_now, args, nargs);
        }
    }
    if (arm(self, A_READ, a_c_recv_into, 1) < 0) {
        return NULL;
    }
    return Py_NewRef(a_again);
}

static PyObject *
step_recv_into_again(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    Py_ssize_t ticks, hint, want;
    if (into_args(args, nargs, &ticks, &hint, &want) < 0) {
        return twin(tw_recv_into_again, args, nargs);
    }
    PyObject *self = args[0];
    int again = 0, left = 0;
    PyObject *count = into_attempt(self, args, hint, want, -1, &again, &left);
    if (count != NULL || (!again && !left)) {
        return count;
    }
    if (left) {
        return twin(tw_recv_into_again, args, nargs);
    }
    if (arm(self, A_READ, a_c_recv_into, 0) < 0) {
        return NULL;
    }
    return Py_NewRef(a_again);
}

static PyObject *
step_sendall_now(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    Py_ssize_t ticks, flags;
    PyObject *self, *sock;
    if (nargs != 3 || !known(self = args[0]) || !PyLong_CheckExact(args[2]) || !small_value(args[2], &flags) ||
        flags < INT_MIN || flags > INT_MAX || !int_slot(self, a_ticks, &ticks) ||
        (sock = SLOT(self, a_sock)) == NULL || !PyObject_TypeCheck(sock, (PyTypeObject *)c_socket_type)) {
        return twin(tw_sendall_now, args, nargs);
    }
    PyObject *writing = SLOT(self, a_writing);
    if (ticks >= a_budget || writing == NULL || writing != Py_None) {
        return writing == NULL ? twin(tw_sendall_now, args, nargs) : Py_NewRef(a_slow);
    }
    /* The data as the native call takes it ("y*"); what it would refuse, the twin has it refuse. */
    Py_buffer view;
    if (PyObject_GetBuffer(args[1], &view, PyBUF_SIMPLE) < 0) {
        PyErr_Clear();
        return twin(tw_sendall_now, args, nargs);
    }
    if (!PyBuffer_IsContiguous(&view, 'C')) {
        PyBuffer_Release(&view);
        return twin(tw_sendall_now, args, nargs);
    }
    int res = on_its_loop(self);
    if (res <= 0) {
        PyBuffer_Release(&view);
        return res < 0 ? NULL : Py_NewRef(a_slow);
    }
    int fd = socket_fd(sock);
    if (fd == -2) {
        PyBuffer_Release(&view);
        return NULL;
    }
    Py_ssize_t sent;
    for (;;) {
        sent = send(fd, view.buf, (size_t)view.len, (int)(flags | a_nosignal));
        if (sent >= 0) {
            break;
        }
        int err = errno;
        if (err == EINTR) {
            if (PyErr_CheckSignals() < 0) {
                PyBuffer_Release(&view);
                return NULL;
            }
            continue;
        }
        PyBuffer_Release(&view);
        if (would_block_errno(err)) {
            return Py_NewRef(small_ints[0]);
        }
        set_errno_error(err);
        return NULL;
    }
    Py_ssize_t total = view.len;
    PyBuffer_Release(&view);
    if (sent == total) {
        put(self, a_ticks, PyLong_FromSsize_t(ticks + 1));
        Py_RETURN_NONE;
    }
    return PyLong_FromSsize_t(sent);
}

/* The readiness callbacks: _on_readable, _on_writable, _on_ready_once. */
static PyObject *
on_ready(PyObject *watch, int direction, int once, PyObject *reference)
{
    if (!PyWeakref_Check(watch)) {
        return PyObject_CallOneArg(reference, watch);
    }
#if PY_VERSION_HEX >= 0x030D0000
    PyObject *sock;
    if (PyWeakref_GetRef(watch, &sock) < 0) {
        return NULL;
    }
    if (sock == NULL) {
        Py_RETURN_NONE;
    }
#else
    PyObject *sock = PyWeakref_GetObject(watch);
    if (sock == NULL) {
        return NULL;
    }
    if (sock == Py_None) {
        Py_RETURN_NONE;
    }
    Py_INCREF(sock);
#endif
    PyObject *result = NULL;
    Py_ssize_t watching;
    if (!known(sock) || !int_slot(sock, a_watching, &watching)) {
        result = PyObject_CallOneArg(reference, watch);
        goto done;
    }
    Py_ssize_t echo = (Py_ssize_t)direction << a_echo_shift;
    if (once && (watching & echo)) {
        put(sock, a_watching, PyLong_FromSsize_t(watching & ~echo));
        result = Py_NewRef(Py_None);
        goto done;
    }
    PyObject *fut = SLOT(sock, direction == A_READ ? a_reader : a_writer);
    int busy = waiting(fut);
    if (busy < 0) {
        goto done;
    }
    if (!busy) {
        PyObject *args[2] = {sock, small_ints[direction]};
        result = PyObject_VectorcallMethod(str_unwatch, args, 2, NULL);
        goto done;
    }
    PyObject *args[2] = {fut, Py_None};
    result = PyObject_VectorcallMethod(str_set_result, args, 2, NULL);
    if (result != NULL && once) {
        put(sock, a_watching, PyLong_FromSsize_t(watching | echo));
    }
done:
    Py_DECREF(sock);
    return result;
}

static PyObject *
on_readable(PyObject *module, PyObject *watch)
{
    return on_ready(watch, A_READ, 0, tw_on_readable);
}

static PyObject *
on_writable(PyObject *module, PyObject *watch)
{
    return on_ready(watch, A_WRITE, 0, tw_on_writable);
}

static PyObject *
on_ready_once(PyObject *module, PyObject *watch)
{
    if (Py_IS_TYPE(watch, read_watch_type)) {
        return on_ready(watch, A_READ, 1, tw_on_ready_once);
    }
    if (Py_IS_TYPE(watch, write_watch_type)) {
        return on_ready(watch, A_WRITE, 1, tw_on_ready_once);
    }
    return PyObject_CallOneArg(tw_on_ready_once, watch);
}

/* _core.into_size. */
static PyObject *
step_into_size(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "into_size() takes 2 positional arguments");
        return NULL;
    }
    Py_ssize_t size = into_size(args[0], args[1]);
    return size == -2 ? NULL : PyLong_FromSsize_t(size);
}

/* _on_own_loop(sock): the check every call starts with, without the two
   Python calls the twin makes before Python 3.12. */
static PyObject *
step_on_own_loop(PyObject *module, PyObject *sock)
{
    if (!known(sock)) {
        return PyObject_CallOneArg(tw_on_own_loop, sock);
    }
    int res = on_its_loop(sock);
    if (res < 0) {
        return NULL;
    }
    return PyBool_FromLong(res);
}

/* _enter(sock, direction, what): False where the method would do nothing (the
   socket's own loop, the budget not spent, no send in progress for a send);
   else the method, which binds, yields or refuses. */
static PyObject *
step_enter(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    Py_ssize_t direction, ticks;
    if (nargs != 3 || !known(args[0]) || !PyLong_CheckExact(args[1]) || !small_value(args[1], &direction) ||
        !int_slot(args[0], a_ticks, &ticks) || ticks >= a_budget) {
        return twin(tw_enter, args, nargs);
    }
    PyObject *writing = SLOT(args[0], a_writing);
    if (direction == A_WRITE && writing != NULL && writing != Py_None) {
        return twin(tw_enter, args, nargs);
    }
    int res = on_its_loop(args[0]);
    if (res < 0) {
        return NULL;
    }
    if (!res) {
        return twin(tw_enter, args, nargs);
    }
    Py_RETURN_FALSE;
}

/* _arm(sock, direction, what): the waiter, made as the steps make it. */
static PyObject *
step_arm(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    Py_ssize_t direction;
    if (nargs != 3 || !known(args[0]) || !PyLong_CheckExact(args[1]) || !small_value(args[1], &direction) ||
        (direction != A_READ && direction != A_WRITE)) {
        return twin(tw_arm, args, nargs);
    }
    if (arm(args[0], (int)direction, args[2], 0) < 0) {
        return NULL;
    }
    return Py_NewRef(SLOT(args[0], direction == A_READ ? a_reader : a_writer));
}

/* -- installing the async steps ---------------------------------------------- */

static PyMethodDef async_defs[] = {
    {"recv_now", (PyCFunction)(void (*)(void))step_recv_now, METH_FASTCALL, NULL},
    {"recv_again", (PyCFunction)(void (*)(void))step_recv_again, METH_FASTCALL, NULL},
    {"recv_into_now", (PyCFunction)(void (*)(void))step_recv_into_now, METH_FASTCALL, NULL},
    {"recv_into_again", (PyCFunction)(void (*)(void))step_recv_into_again, METH_FASTCALL, NULL},
    {"sendall_now", (PyCFunction)(void (*)(void))step_sendall_now, METH_FASTCALL, NULL},
    {"into_size", (PyCFunction)(void (*)(void))step_into_size, METH_FASTCALL, NULL},
    {"on_readable", on_readable, METH_O, NULL},
    {"on_writable", on_writable, METH_O, NULL},
    {"on_ready_once", on_ready_once, METH_O, NULL},
    {"on_own_loop", step_on_own_loop, METH_O, NULL},
    {"enter", (PyCFunction)(void (*)(void))step_enter, METH_FASTCALL, NULL},
    {"arm", (PyCFunction)(void (*)(void))step_arm, METH_FASTCALL, NULL},
};

/* A new reference to mapping[key]; KeyError if it is missing. */
static PyObject *
item(PyObject *mapping, const char *key)
{
    PyObject *value = PyDict_GetItemString(mapping, key);  /* borrowed */
    if (value == NULL) {
        if (!PyErr_Occurred()) {
            PyErr_Format(PyExc_KeyError, "%s", key);
        }
        return NULL;
    }
    return Py_NewRef(value);
}

static int
long_item(PyObject *mapping, const char *key, long *value)
{
    PyObject *v = item(mapping, key);
    if (v == NULL) {
        return -1;
    }
    *value = PyLong_AsLong(v);
    Py_DECREF(v);
    return *value == -1 && PyErr_Occurred() ? -1 : 0;
}

PyDoc_STRVAR(async_steps_doc,
"async_steps($module, cls, reference, constants, /)\n--\n\n"
"The C hot-path steps and readiness callbacks for ``cls`` (asock.socket), by name.\n\n"
"``reference`` holds their Python twins under the same names (the C ones\n"
"call them for every case they leave to them); ``constants`` what they\n"
"share with asock/_async_socket.py.  A later call replaces the state.");

static PyObject *
async_steps(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 3 || !PyType_Check(args[0]) || !PyDict_Check(args[1]) || !PyDict_Check(args[2])) {
        PyErr_SetString(PyExc_TypeError, "async_steps(cls, reference, constants) takes a class and two dicts");
        return NULL;
    }
    PyTypeObject *type = (PyTypeObject *)args[0];
    PyObject *ref = args[1], *consts = args[2];
    Py_ssize_t offsets[12];
    Py_ssize_t *targets[12] = {&a_fd, &a_hint, &a_loop, &a_reader, &a_reading, &a_sock, &a_thread, &a_ticks,
                               &a_timeout, &a_watching, &a_writer, &a_writing};
    for (int i = 0; i < 12; i++) {
        offsets[i] = slot_offset(type, async_names[i]);
        if (offsets[i] < 0) {
            return NULL;
        }
    }
    long budget, wait_first, nosignal, slow_lookup, echo;
    PyObject *watches = NULL;
    if (long_item(consts, "BUDGET", &budget) < 0 || long_item(consts, "WAIT_FIRST", &wait_first) < 0 ||
        long_item(consts, "NOSIGNAL", &nosignal) < 0 || long_item(consts, "SLOW_LOOKUP", &slow_lookup) < 0 ||
        long_item(consts, "ECHO", &echo) < 0 || set_once(&a_again, item(consts, "AGAIN")) < 0 ||
        set_once(&a_slow, item(consts, "SLOW")) < 0 || set_once(&a_c_recv, item(consts, "recv")) < 0 ||
        set_once(&a_c_recv_into, item(consts, "recv_into")) < 0 ||
        set_once(&a_get_running_loop, item(consts, "get_running_loop")) < 0 ||
        set_once(&base_create_future, item(consts, "create_future")) < 0 ||
        set_once(&base_is_running, item(consts, "is_running")) < 0 ||
        set_once(&future_type, item(consts, "Future")) < 0 ||
        set_once(&c_socket_type, item(consts, "socket_type")) < 0 ||
        set_once(&c_fileno, PyObject_GetAttrString(c_socket_type, "fileno")) < 0 ||
        set_once(&tw_recv_now, item(ref, "recv_now")) < 0 || set_once(&tw_recv_again, item(ref, "recv_again")) < 0 ||
        set_once(&tw_recv_into_now, item(ref, "recv_into_now")) < 0 ||
        set_once(&tw_recv_into_again, item(ref, "recv_into_again")) < 0 ||
        set_once(&tw_sendall_now, item(ref, "sendall_now")) < 0 ||
        set_once(&tw_on_readable, item(ref, "on_readable")) < 0 ||
        set_once(&tw_on_writable, item(ref, "on_writable")) < 0 ||
        set_once(&tw_on_ready_once, item(ref, "on_ready_once")) < 0 ||
        set_once(&tw_on_own_loop, item(ref, "on_own_loop")) < 0 || set_once(&tw_enter, item(ref, "enter")) < 0 ||
        set_once(&tw_arm, item(ref, "arm")) < 0 ||
        set_once(&kw_loop, Py_BuildValue("(s)", "loop")) < 0 ||
        set_once(&str_create_future, PyUnicode_InternFromString("create_future")) < 0 ||
        set_once(&str_is_running, PyUnicode_InternFromString("is_running")) < 0 ||
        set_once(&str_thread_id, PyUnicode_InternFromString("_thread_id")) < 0 ||
        set_once(&str_done, PyUnicode_InternFromString("done")) < 0 ||
        set_once(&str_set_result, PyUnicode_InternFromString("set_result")) < 0 ||
        set_once(&str_arm, PyUnicode_InternFromString("_arm")) < 0 ||
        set_once(&str_unwatch, PyUnicode_InternFromString("_unwatch")) < 0 ||
        set_once(&small_ints[0], PyLong_FromLong(0)) < 0 || set_once(&small_ints[1], PyLong_FromLong(A_READ)) < 0 ||
        set_once(&small_ints[2], PyLong_FromLong(A_WRITE)) < 0 || (watches = item(consts, "watches")) == NULL) {
        return NULL;
    }
    if (!PyTuple_Check(watches) || PyTuple_GET_SIZE(watches) != 2 || !PyType_Check(PyTuple_GET_ITEM(watches, 0)) ||
        !PyType_Check(PyTuple_GET_ITEM(watches, 1)) || !PyType_Check(c_socket_type)) {
        Py_DECREF(watches);
        PyErr_SetString(PyExc_TypeError, "async_steps(): watches must be two classes, socket_type a class");
        return NULL;
    }
    Py_XSETREF(read_watch_type, (PyTypeObject *)Py_NewRef(PyTuple_GET_ITEM(watches, 0)));
    Py_XSETREF(write_watch_type, (PyTypeObject *)Py_NewRef(PyTuple_GET_ITEM(watches, 1)));
    Py_DECREF(watches);
    PyObject *result = PyDict_New();
    if (result == NULL) {
        return NULL;
    }
    PyObject *name = PyModule_GetNameObject(module);
    if (name == NULL) {
        Py_DECREF(result);
        return NULL;
    }
    for (size_t i = 0; i < sizeof(async_defs) / sizeof(async_defs[0]); i++) {
        PyObject *func = PyCFunction_NewEx(&async_defs[i], NULL, name);
        if (func == NULL || PyDict_SetItemString(result, async_defs[i].ml_name, func) < 0) {
            Py_XDECREF(func);
            Py_DECREF(name);
            Py_DECREF(result);
            return NULL;
        }
        Py_DECREF(func);
    }
    Py_DECREF(name);
    for (int i = 0; i < KNOWN_SUBCLASSES; i++) {
        Py_CLEAR(known_subclasses[i]);
    }
    Py_INCREF(type);
    Py_XSETREF(async_type, type);
    for (int i = 0; i < 12; i++) {
        *targets[i] = offsets[i];
    }
    a_budget = budget;
    a_wait_first = wait_first;
    a_nosignal = nosignal;
    a_slow_lookup = (int)slow_lookup;
    a_echo_shift = (int)echo;
    return result;
}

static PyMethodDef module_methods[] = {
    {"methods", (PyCFunction)(void (*)(void))methods, METH_FASTCALL | METH_KEYWORDS, methods_doc},
    {"async_steps", (PyCFunction)(void (*)(void))async_steps, METH_FASTCALL, async_steps_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT,
    "asock._speedups",
    "The sync facade's hot methods in C (optional: asock/_sync_socket.py is the reference).",
    -1,
    module_methods,
};

PyMODINIT_FUNC
PyInit__speedups(void)
{
    return PyModule_Create(&module_def);
}
