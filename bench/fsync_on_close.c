/* LD_PRELOAD shim for bench/bench_receiver.py: fsync every regular file opened for writing
 * before it is closed. Loaded into DCMTK's storescp, it makes storescp durable the way
 * `mercure receiver` is with its default `fsync: true` (storescp answers a C-STORE only after
 * it closed the file), so the benchmark can also compare like with like.
 *
 *   gcc -shared -fPIC -O2 -o fsync_on_close.so fsync_on_close.c -ldl
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

static int written_regular_file(int fd)
{
    int flags = fcntl(fd, F_GETFL);
    struct stat st;
    if (flags < 0 || (flags & O_ACCMODE) == O_RDONLY)
        return 0;
    return fstat(fd, &st) == 0 && S_ISREG(st.st_mode);
}

int fclose(FILE *stream)
{
    static int (*real_fclose)(FILE *);
    if (!real_fclose)
        real_fclose = (int (*)(FILE *))dlsym(RTLD_NEXT, "fclose");
    int fd = stream ? fileno(stream) : -1;
    if (fd > 2 && written_regular_file(fd) && fflush(stream) == 0)
        fsync(fd);
    return real_fclose(stream);
}

int close(int fd)
{
    static int (*real_close)(int);
    if (!real_close)
        real_close = (int (*)(int))dlsym(RTLD_NEXT, "close");
    if (fd > 2 && written_regular_file(fd))
        fsync(fd);
    return real_close(fd);
}
