/* Independent oracle for the preprocessing tests, restated in C and compiled with
 * -ffp-contract=off.
 *
 * Default mode: Arm's reference greyscale and int8 quantisation formulas
 * (ml-embedded-evaluation-kit RgbToGrayscale and VisualWakeWordPreProcess).
 * Reads "scale zero_point" then lines "r g b"; prints "grey q" per line.
 *
 * "box" mode (first token "box"): the reference's resize and centre-crop sizes
 * (gen_rgb_cpp.py: ratio = float(max(w, h)) / float(min(W, H)); rw = int(W * ratio);
 * rh = int(H * ratio); crop box ((rw - w) / 2, (rh - h) / 2, (rw + w) / 2, (rh + h) / 2),
 * which Pillow rounds half to even). Reads lines "W H w h"; prints "rw rh x0 y0 x1 y1". */
#include <fenv.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

static int box_mode(void) {
    long W, H, w, h;
    fesetround(FE_TONEAREST); /* rint() then rounds half to even, as Python's round() */
    while (scanf("%ld %ld %ld %ld", &W, &H, &w, &h) == 4) {
        double side = (double)(w > h ? w : h);
        double ratio = side / (double)(W < H ? W : H);
        long rw = (long)((double)W * ratio); /* int(): truncation toward zero */
        long rh = (long)((double)H * ratio);
        long x0 = (long)rint((double)(rw - w) / 2.0), y0 = (long)rint((double)(rh - h) / 2.0);
        long x1 = (long)rint((double)(rw + w) / 2.0), y1 = (long)rint((double)(rh + h) / 2.0);
        printf("%ld %ld %ld %ld %ld %ld\n", rw, rh, x0, y0, x1, y1);
    }
    return 0;
}

int main(void) {
    char first[32];
    if (scanf("%31s", first) != 1) return 2;
    if (strcmp(first, "box") == 0) return box_mode();
    float scale, zp;
    if (sscanf(first, "%f", &scale) != 1 || scanf("%f", &zp) != 1) return 2;
    const float R = 0.299, G = 0.587, B = 0.114;
    unsigned r, g, b;
    while (scanf("%u %u %u", &r, &g, &b) == 3) {
        uint32_t grey = R * (uint8_t)r + G * (uint8_t)g + B * (uint8_t)b;
        uint8_t gy = grey <= 255 ? grey : 255;
        float x = ((float)gy / 255.0f) / scale + zp;
        int32_t q = (int32_t)x;            /* truncation toward zero */
        if (q < -128) q = -128;
        if (q > 127) q = 127;
        printf("%u %d\n", gy, q);
    }
    return 0;
}
