/* Independent oracle for the preprocessing tests: Arm's reference greyscale and int8
 * quantisation formulas (ml-embedded-evaluation-kit RgbToGrayscale and
 * VisualWakeWordPreProcess), restated in C and compiled with -ffp-contract=off.
 * Reads "scale zero_point" then lines "r g b"; prints "grey q" per line. */
#include <stdint.h>
#include <stdio.h>

int main(void) {
    float scale, zp;
    if (scanf("%f %f", &scale, &zp) != 2) return 2;
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
