/*
 * opencl_shim.c - a tiny interposer libOpenCL.so that lets Arm Compute Library (ACL, used by
 * Arm NN's GpuAcc backend) run on PoCL's CPU OpenCL device.
 *
 * Functional check of GpuAcc's code path and numerics under emulation, not of Mali speed.
 * See tools/opencl-shim/README.md and docs/gpuacc-pocl.md.
 *
 * ACL dlopen()s "libOpenCL.so" and dlsym()s every OpenCL entry point from that handle.
 * This library is put first on LD_LIBRARY_PATH under that name.  It is linked against the
 * real ICD loader (libOpenCL.so.1, DT_NEEDED), so every entry point it does not define is
 * found by dlsym() in the real loader.  The few it overrides get the real function through
 * dlopen() of the real loader by path (OPENCL_SHIM_REAL, default
 * /usr/lib/<multiarch>/libOpenCL.so.1) and dlsym() on that handle.  The shim never calls an
 * OpenCL function by name (libarm_compute exports its own cl* wrappers, which would be bound
 * instead and recurse).
 *
 * Fixes (the three blockers in docs/gpuacc-pocl.md):
 *  1. device type: Arm NN / ACL ask for CL_DEVICE_TYPE_GPU devices and PoCL's is a CPU.
 *     clGetDeviceIDs(GPU) falls back to CPU devices when the real call finds no GPU, and
 *     clGetDeviceInfo(CL_DEVICE_TYPE) reports CPU devices as GPU.  clCreateContextFromType
 *     gets the same fallback.
 *  2. ACL needs cl_arm_non_uniform_work_group_size (or OpenCL 2.x/3.0 with non-uniform work
 *     groups).  The extension is appended to CL_DEVICE_EXTENSIONS, the build option it makes
 *     ACL pass (-cl-arm-non-uniform-work-group-size) is removed from clBuildProgram /
 *     clCompileProgram options, and clEnqueueNDRangeKernel passes a NULL local size (runtime
 *     chooses) when the requested local size does not divide the global size.
 *  3. CL_DEVICE_VERSION is left alone: faking "OpenCL 2.0" breaks PoCL's kernel builds.
 *  4. (found with PoCL 6.0) ACL's helpers.h has self-referential no-op macros such as
 *     "#define convert_uchar2_sat convert_uchar2_sat".  PoCL implements the built-ins as
 *     macros ("#define convert_uchar2_sat _cl_convert_uchar2_sat", _builtin_renames.h), so
 *     ACL's line replaces PoCL's rename and the int8 kernels fail with "use of undeclared
 *     identifier 'convert_uchar2_sat'".  clCreateProgramWithSource blanks every line of
 *     the form "#define NAME NAME" (a no-op in standard OpenCL C), keeping line numbers.
 *
 * Environment: OPENCL_SHIM_REAL=path of the real loader; OPENCL_SHIM_DEBUG=1 logs each
 * intervention to stderr.
 */
#define _GNU_SOURCE
#define CL_TARGET_OPENCL_VERSION 300
#include <CL/cl.h>
#include <dlfcn.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef SHIM_DEFAULT_REAL
#if defined(__aarch64__)
#define SHIM_DEFAULT_REAL "/usr/lib/aarch64-linux-gnu/libOpenCL.so.1"
#elif defined(__x86_64__)
#define SHIM_DEFAULT_REAL "/usr/lib/x86_64-linux-gnu/libOpenCL.so.1"
#else
#define SHIM_DEFAULT_REAL "libOpenCL.so.1"
#endif
#endif

#define EXPORT __attribute__((visibility("default")))
#define EXT_NAME "cl_arm_non_uniform_work_group_size"
#define EXT_FLAG "-cl-arm-non-uniform-work-group-size"

static int shim_debug = -1;

static void dbg(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void dbg(const char *fmt, ...) {
    if (shim_debug < 0) {
        const char *e = getenv("OPENCL_SHIM_DEBUG");
        shim_debug = (e && *e && strcmp(e, "0") != 0) ? 1 : 0;
    }
    if (shim_debug) {
        va_list ap;
        va_start(ap, fmt);
        fprintf(stderr, "[opencl-shim] ");
        vfprintf(stderr, fmt, ap);
        fputc('\n', stderr);
        va_end(ap);
    }
}

static void *real_handle(void) {
    static void *h;
    if (!h) {
        const char *p = getenv("OPENCL_SHIM_REAL");
        if (!p || !*p) p = SHIM_DEFAULT_REAL;
        h = dlopen(p, RTLD_NOW | RTLD_LOCAL);
        if (!h) {
            fprintf(stderr, "[opencl-shim] cannot load the real OpenCL loader %s: %s\n", p, dlerror());
            abort();
        }
    }
    return h;
}

static void *real_sym(const char *name) {
    void *f = dlsym(real_handle(), name);
    if (!f) {
        fprintf(stderr, "[opencl-shim] real loader lacks %s\n", name);
        abort();
    }
    return f;
}

#define REAL(type, name) \
    static type r_##name; \
    if (!r_##name) r_##name = (type)real_sym(#name)

/* ---- 1. device type ---------------------------------------------------------------- */

typedef cl_int (*pGetDeviceIDs)(cl_platform_id, cl_device_type, cl_uint, cl_device_id *, cl_uint *);
typedef cl_int (*pGetDeviceInfo)(cl_device_id, cl_device_info, size_t, void *, size_t *);
typedef cl_context (*pCreateContextFromType)(const cl_context_properties *, cl_device_type,
                                             void(CL_CALLBACK *)(const char *, const void *, size_t, void *),
                                             void *, cl_int *);

static int wants_gpu_only(cl_device_type t) {
    return (t & CL_DEVICE_TYPE_GPU) && t != CL_DEVICE_TYPE_ALL;
}

EXPORT cl_int clGetDeviceIDs(cl_platform_id platform, cl_device_type device_type, cl_uint num_entries,
                             cl_device_id *devices, cl_uint *num_devices) {
    REAL(pGetDeviceIDs, clGetDeviceIDs);
    cl_int err = r_clGetDeviceIDs(platform, device_type, num_entries, devices, num_devices);
    if (err == CL_DEVICE_NOT_FOUND && wants_gpu_only(device_type)) {
        cl_device_type t = (device_type & ~(cl_device_type)CL_DEVICE_TYPE_GPU) | CL_DEVICE_TYPE_CPU;
        dbg("clGetDeviceIDs: no GPU device, using CPU devices (type %ld)", (long)t);
        err = r_clGetDeviceIDs(platform, t, num_entries, devices, num_devices);
    }
    return err;
}

EXPORT cl_context clCreateContextFromType(const cl_context_properties *props, cl_device_type device_type,
                                          void(CL_CALLBACK *notify)(const char *, const void *, size_t, void *),
                                          void *user_data, cl_int *errcode_ret) {
    REAL(pCreateContextFromType, clCreateContextFromType);
    cl_int err = CL_SUCCESS;
    cl_context c = r_clCreateContextFromType(props, device_type, notify, user_data, &err);
    if (!c && err == CL_DEVICE_NOT_FOUND && wants_gpu_only(device_type)) {
        cl_device_type t = (device_type & ~(cl_device_type)CL_DEVICE_TYPE_GPU) | CL_DEVICE_TYPE_CPU;
        dbg("clCreateContextFromType: no GPU device, using CPU devices (type %ld)", (long)t);
        c = r_clCreateContextFromType(props, t, notify, user_data, &err);
    }
    if (errcode_ret) *errcode_ret = err;
    return c;
}

/* ---- 1 + 2. device info: type and extensions ----------------------------------------- */

EXPORT cl_int clGetDeviceInfo(cl_device_id device, cl_device_info param_name, size_t param_value_size,
                              void *param_value, size_t *param_value_size_ret) {
    REAL(pGetDeviceInfo, clGetDeviceInfo);
    if (param_name == CL_DEVICE_TYPE) {
        cl_device_type t = 0;
        cl_int err = r_clGetDeviceInfo(device, CL_DEVICE_TYPE, sizeof t, &t, NULL);
        if (err != CL_SUCCESS) return err;
        if (t & CL_DEVICE_TYPE_CPU) {
            dbg("clGetDeviceInfo(CL_DEVICE_TYPE): reporting GPU (real type %ld)", (long)t);
            t = (t & ~(cl_device_type)CL_DEVICE_TYPE_CPU) | CL_DEVICE_TYPE_GPU;
        }
        if (param_value_size_ret) *param_value_size_ret = sizeof t;
        if (param_value) {
            if (param_value_size < sizeof t) return CL_INVALID_VALUE;
            memcpy(param_value, &t, sizeof t);
        }
        return CL_SUCCESS;
    }
    if (param_name == CL_DEVICE_EXTENSIONS) {
        size_t n = 0;
        cl_int err = r_clGetDeviceInfo(device, CL_DEVICE_EXTENSIONS, 0, NULL, &n);
        if (err != CL_SUCCESS) return err;
        char *s = malloc(n + sizeof(EXT_NAME) + 2);
        if (!s) return CL_OUT_OF_HOST_MEMORY;
        err = r_clGetDeviceInfo(device, CL_DEVICE_EXTENSIONS, n, s, NULL);
        if (err != CL_SUCCESS) { free(s); return err; }
        s[n ? n - 1 : 0] = '\0';
        if (!strstr(s, EXT_NAME)) {
            size_t l = strlen(s);
            if (l && s[l - 1] != ' ') s[l++] = ' ';
            memcpy(s + l, EXT_NAME, sizeof(EXT_NAME)); /* includes the NUL */
            dbg("clGetDeviceInfo(CL_DEVICE_EXTENSIONS): added " EXT_NAME);
        }
        size_t need = strlen(s) + 1;
        if (param_value_size_ret) *param_value_size_ret = need;
        if (param_value) {
            if (param_value_size < need) { free(s); return CL_INVALID_VALUE; }
            memcpy(param_value, s, need);
        }
        free(s);
        return CL_SUCCESS;
    }
    return r_clGetDeviceInfo(device, param_name, param_value_size, param_value, param_value_size_ret);
}

/* ---- 2. build options ------------------------------------------------------------------ */

/* Returns a malloc'd copy of opts without EXT_FLAG, or NULL if the flag is absent. */
static char *strip_flag(const char *opts) {
    if (!opts || !strstr(opts, EXT_FLAG)) return NULL;
    char *o = strdup(opts);
    if (!o) return NULL;
    char *p;
    size_t fl = strlen(EXT_FLAG);
    while ((p = strstr(o, EXT_FLAG)) != NULL) {
        char e = p[fl];
        int starts = (p == o) || p[-1] == ' ' || p[-1] == '\t';
        if (starts && (e == '\0' || e == ' ' || e == '\t')) {
            memmove(p, p + fl, strlen(p + fl) + 1);
        } else {
            break; /* a longer, different flag: leave it */
        }
    }
    dbg("build options: removed " EXT_FLAG);
    return o;
}

typedef cl_int (*pBuildProgram)(cl_program, cl_uint, const cl_device_id *, const char *,
                                void(CL_CALLBACK *)(cl_program, void *), void *);
typedef cl_int (*pCompileProgram)(cl_program, cl_uint, const cl_device_id *, const char *, cl_uint,
                                  const cl_program *, const char **, void(CL_CALLBACK *)(cl_program, void *),
                                  void *);

EXPORT cl_int clBuildProgram(cl_program program, cl_uint num_devices, const cl_device_id *device_list,
                             const char *options, void(CL_CALLBACK *notify)(cl_program, void *), void *user_data) {
    REAL(pBuildProgram, clBuildProgram);
    char *o = strip_flag(options);
    cl_int err = r_clBuildProgram(program, num_devices, device_list, o ? o : options, notify, user_data);
    free(o);
    return err;
}

EXPORT cl_int clCompileProgram(cl_program program, cl_uint num_devices, const cl_device_id *device_list,
                               const char *options, cl_uint num_input_headers, const cl_program *input_headers,
                               const char **header_include_names, void(CL_CALLBACK *notify)(cl_program, void *),
                               void *user_data) {
    REAL(pCompileProgram, clCompileProgram);
    char *o = strip_flag(options);
    cl_int err = r_clCompileProgram(program, num_devices, device_list, o ? o : options, num_input_headers,
                                    input_headers, header_include_names, notify, user_data);
    free(o);
    return err;
}

/* ---- 2. non-uniform work groups ---------------------------------------------------------- */

typedef cl_int (*pEnqueueNDRangeKernel)(cl_command_queue, cl_kernel, cl_uint, const size_t *, const size_t *,
                                        const size_t *, cl_uint, const cl_event *, cl_event *);

EXPORT cl_int clEnqueueNDRangeKernel(cl_command_queue queue, cl_kernel kernel, cl_uint work_dim,
                                     const size_t *global_work_offset, const size_t *global_work_size,
                                     const size_t *local_work_size, cl_uint num_events_in_wait_list,
                                     const cl_event *event_wait_list, cl_event *event) {
    REAL(pEnqueueNDRangeKernel, clEnqueueNDRangeKernel);
    if (local_work_size && global_work_size) {
        for (cl_uint i = 0; i < work_dim; ++i) {
            if (local_work_size[i] == 0 || global_work_size[i] % local_work_size[i] != 0) {
                dbg("clEnqueueNDRangeKernel: local size %zu does not divide global size %zu in dim %u: NULL local size", local_work_size[i], global_work_size[i], (unsigned)i);
                local_work_size = NULL;
                break;
            }
        }
    }
    return r_clEnqueueNDRangeKernel(queue, kernel, work_dim, global_work_offset, global_work_size,
                                    local_work_size, num_events_in_wait_list, event_wait_list, event);
}

/* ---- 4. self-referential macros in program sources ---------------------------------------- */

typedef cl_program (*pCreateProgramWithSource)(cl_context, cl_uint, const char **, const size_t *, cl_int *);

static int is_ident(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
}

/* If [b, e) is "# define NAME NAME" (any blanks), returns 1. */
static int self_define(const char *b, const char *e) {
    const char *p = b;
    while (p < e && (*p == ' ' || *p == '\t')) ++p;
    if (p >= e || *p != '#') return 0;
    ++p;
    while (p < e && (*p == ' ' || *p == '\t')) ++p;
    if (e - p < 7 || strncmp(p, "define", 6) != 0 || (p[6] != ' ' && p[6] != '\t')) return 0;
    p += 6;
    while (p < e && (*p == ' ' || *p == '\t')) ++p;
    const char *n1 = p;
    while (p < e && is_ident(*p)) ++p;
    size_t l1 = (size_t)(p - n1);
    if (l1 == 0 || p >= e || (*p != ' ' && *p != '\t')) return 0;
    while (p < e && (*p == ' ' || *p == '\t')) ++p;
    const char *n2 = p;
    while (p < e && is_ident(*p)) ++p;
    size_t l2 = (size_t)(p - n2);
    while (p < e && (*p == ' ' || *p == '\t' || *p == '\r')) ++p;
    return p == e && l1 == l2 && memcmp(n1, n2, l1) == 0;
}

EXPORT cl_program clCreateProgramWithSource(cl_context context, cl_uint count, const char **strings,
                                            const size_t *lengths, cl_int *errcode_ret) {
    REAL(pCreateProgramWithSource, clCreateProgramWithSource);
    if (count == 0 || !strings) return r_clCreateProgramWithSource(context, count, strings, lengths, errcode_ret);
    size_t total = 0;
    for (cl_uint i = 0; i < count; ++i) {
        if (!strings[i]) return r_clCreateProgramWithSource(context, count, strings, lengths, errcode_ret);
        total += (lengths && lengths[i]) ? lengths[i] : strlen(strings[i]);
    }
    char *src = malloc(total + 1);
    if (!src) return r_clCreateProgramWithSource(context, count, strings, lengths, errcode_ret);
    size_t off = 0;
    for (cl_uint i = 0; i < count; ++i) {
        size_t l = (lengths && lengths[i]) ? lengths[i] : strlen(strings[i]);
        memcpy(src + off, strings[i], l);
        off += l;
    }
    src[total] = '\0';
    long blanked = 0;
    for (char *b = src; *b;) {
        char *e = strchr(b, '\n');
        if (!e) e = src + total;
        if (self_define(b, e)) {
            memset(b, ' ', (size_t)(e - b));
            ++blanked;
        }
        b = (*e == '\n') ? e + 1 : e;
    }
    if (blanked) dbg("clCreateProgramWithSource: blanked %ld self-referential #define lines", blanked);
    const char *one = src;
    cl_program p = r_clCreateProgramWithSource(context, 1, &one, &total, errcode_ret);
    free(src);
    return p;
}
