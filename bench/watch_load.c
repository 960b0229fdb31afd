/* Loopback connect/accept/close loop at full speed for SECONDS (run it inside a private
 * network namespace). The client closes first (it passes through TIME_WAIT), then the
 * server. Prints the connections per second achieved. Built by bench/watch.sh. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(int argc, char **argv) {
    double seconds = argc > 1 ? atof(argv[1]) : 10.0;
    int port = argc > 2 ? atoi(argv[2]) : 7300;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int l = socket(AF_INET, SOCK_STREAM, 0), one = 1;
    setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(l, (struct sockaddr *)&a, sizeof a) || listen(l, 1024)) { perror("listen"); return 1; }
    long n = 0;
    double t0 = now(), end = t0 + seconds;
    for (;;) {
        for (int i = 0; i < 100; i++) {
            int c = socket(AF_INET, SOCK_STREAM, 0);
            if (connect(c, (struct sockaddr *)&a, sizeof a)) { perror("connect"); return 1; }
            int s = accept(l, NULL, NULL);
            if (s < 0) { perror("accept"); return 1; }
            close(c);
            close(s);
        }
        n += 100;
        if (now() >= end) break;
    }
    printf("%.0f\n", n / (now() - t0));
    return 0;
}
