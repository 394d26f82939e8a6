/* How fast one core reads what the other core just wrote, against what it wrote itself
 * (docs/BENCHMARKS.md, batch-1 inference): thread 0 writes 1 MB, then either it or thread 1
 * sums it with vector loads, alternately.
 *
 *     gcc -O3 -ffast-math -march=native -mprefer-vector-width=512 -o /tmp/cross_core \
 *         tools/cross_core_read.c -lpthread && /tmp/cross_core
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sched.h>
#include <stdatomic.h>
#define N (256*1024) /* floats = 1 MB */
float *buf; atomic_int phase = 0; double t_remote=0, t_local=0; int reps=2000;
static double now(){struct timespec t; clock_gettime(CLOCK_MONOTONIC,&t); return t.tv_sec+t.tv_nsec*1e-9;}
static void pin(int c){cpu_set_t s; CPU_ZERO(&s); CPU_SET(c,&s); pthread_setaffinity_np(pthread_self(),sizeof s,&s);}
volatile float sink;
static float sum(){float s0=0,s1=0,s2=0,s3=0; for(int i=0;i<N;i+=4){s0+=buf[i];s1+=buf[i+1];s2+=buf[i+2];s3+=buf[i+3];} return s0+s1+s2+s3;}
static void wr(float v){for(int i=0;i<N;i++) buf[i]=v+i;}
void* reader(void*a){pin(1); for(int r=0;r<reps;r++){ while(atomic_load(&phase)!=2*r+1); double t=now(); sink=sum(); t_remote+=now()-t; atomic_store(&phase,2*r+2);} return 0;}
int main(){buf=aligned_alloc(64,N*4); pin(0); pthread_t th; pthread_create(&th,0,reader,0);
 for(int r=0;r<reps;r++){ wr(r); double t; if(r%2==0){ t=now(); sink=sum(); t_local+=now()-t;} atomic_store(&phase,2*r+1); while(atomic_load(&phase)!=2*r+2);} pthread_join(th,0);
 printf("local read of 1MB just written: %.1f GB/s\n", (reps/2)*N*4/t_local/1e9);
 printf("remote read of 1MB just written by other core: %.1f GB/s\n", reps*N*4/t_remote/1e9);}
