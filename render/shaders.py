"""GLSL of the one pass: the chunk surfaces, the trees (instanced models), then the sky, all
writing every target with the one surface fragment shader.

Targets: 0 scene colour (RGBA8), 1 planar depth in metres (R32F), 2 (class, instance) (RG32UI),
3 world normal encoded n * 0.5 + 0.5 (RGBA8). Lighting: a sun (Lambert), a sky/ground hemisphere
ambient, Schlick-Fresnel sky reflection on water, and exponential atmospheric perspective towards
the horizon colour. Close to the camera the ground gets material detail finer than the ortho's
texels: value noise on a world-anchored 0.25 m and 1 m lattice (hashed integer cells, so the same
ground looks the same from every chunk and every run), faded out by 60 m.
"""

COMMON = """
#version 330
uniform vec3 u_sun;          // unit, towards the sun, ENU
uniform vec3 u_zenith;       // sky colours, linear 0..1
uniform vec3 u_horizon;
uniform float u_visibility;  // metres: distance at which haze reaches 63 %
vec3 sky_colour(vec3 dir) {
    float e = clamp(dir.z, -1.0, 1.0);
    vec3 sky = mix(u_horizon, u_zenith, pow(clamp(e, 0.0, 1.0), 0.55));
    sky = mix(sky, u_horizon * 0.8, clamp(-e * 4.0, 0.0, 1.0));
    float s = max(dot(dir, u_sun), 0.0);
    return sky + vec3(1.0, 0.95, 0.85) * (pow(s, 900.0) * 4.0 + pow(s, 12.0) * 0.12);
}
"""

SKY_VERTEX = """
#version 330
in vec2 in_vert;
out vec2 v_ndc;
void main() { v_ndc = in_vert; gl_Position = vec4(in_vert, 1.0, 1.0); }
"""

SKY_FRAGMENT = COMMON + """
uniform mat3 u_eye_to_enu;
uniform vec2 u_tan_half;     // tan(fov_x / 2), tan(fov_y / 2)
uniform float u_no_hit;
in vec2 v_ndc;
layout(location = 0) out vec4 o_colour;
layout(location = 1) out float o_depth;
layout(location = 2) out uvec2 o_ids;
layout(location = 3) out vec4 o_normal;
void main() {
    vec3 eye = normalize(vec3(v_ndc * u_tan_half, -1.0));
    o_colour = vec4(sky_colour(normalize(u_eye_to_enu * eye)), 1.0);
    o_depth = u_no_hit;
    o_ids = uvec2(0u, 0u);
    o_normal = vec4(0.0);
}
"""

SURFACE_VERTEX = """
#version 330
uniform mat4 u_view_proj;    // camera-relative ENU -> clip
uniform vec3 u_offset;       // chunk origin - camera position, ENU metres
in vec3 in_position;
in vec3 in_normal;
in vec2 in_uv;
in uint in_instance;
out vec3 v_rel;
out vec3 v_normal;
out vec2 v_uv;
out vec2 v_local;
flat out uint v_instance;
void main() {
    v_local = in_position.xy;
    v_rel = in_position + u_offset;
    v_normal = in_normal;
    v_uv = in_uv;
    v_instance = in_instance;
    gl_Position = u_view_proj * vec4(v_rel, 1.0);
}
"""

TREE_VERTEX = """
#version 330
uniform mat4 u_view_proj;    // camera-relative ENU -> clip
uniform vec3 u_offset;       // chunk origin - camera position, ENU metres
in vec3 in_position;         // the unit model (exporters.tree_mesh)
in vec3 in_normal;
in vec3 in_translation;      // per instance: trunk foot relative to the chunk origin, ENU metres
in vec2 in_turn;             // per instance: (cos, sin) of the turn about up
in vec3 in_scale;            // per instance: (radius, radius, height) metres
in uint in_instance;         // per instance: the tree's id
out vec3 v_rel;
out vec3 v_normal;
out vec2 v_uv;
out vec2 v_local;
flat out uint v_instance;
vec3 turned(vec3 p) { return vec3(p.x * in_turn.x - p.y * in_turn.y, p.x * in_turn.y + p.y * in_turn.x, p.z); }
void main() {
    vec3 local = turned(in_position * in_scale) + in_translation;
    v_local = local.xy;
    v_rel = local + u_offset;
    v_normal = normalize(turned(in_normal / in_scale));  // normals take the inverse scale
    v_uv = vec2(0.0);
    v_instance = in_instance;
    gl_Position = u_view_proj * vec4(v_rel, 1.0);
}
"""

SURFACE_FRAGMENT = COMMON + """
uniform sampler2D u_albedo;
uniform usampler2D u_classes;
uniform vec3 u_forward;      // camera forward, ENU
uniform int u_kind;          // 0 terrain, 1 water, 2 roof, 3 facade, 4 tree, 5 ground grid (water where classed so)
uniform vec4 u_colour;       // alpha 1: linear albedo of an untextured surface (trees)
uniform int u_unlit;         // 1: the scene target gets the surface's own colour (no light, no haze)
uniform uint u_building_class;
uniform uint u_rock_class;
uniform uint u_tree_class;
uniform uint u_water_class;
uniform vec2 u_origin_mod;  // chunk origin modulo 1024 m (the detail's period), metres
in vec3 v_rel;
in vec3 v_normal;
in vec2 v_uv;
in vec2 v_local;
flat in uint v_instance;
uint cell_hash(ivec2 c, int mask) {  // cells wrap at mask + 1: one period of the detail
    uint h = uint(c.x & mask) * 73856093u ^ uint(c.y & mask) * 19349663u;
    h ^= h >> 13; h *= 0x5bd1e995u; h ^= h >> 15;
    return h;
}
float value_noise(vec2 cells_f, int mask) {  // cells_f: world position in lattice cells, modulo the period
    vec2 i = floor(cells_f);
    vec2 f = cells_f - i;
    vec2 u = f * f * (3.0 - 2.0 * f);
    ivec2 c = ivec2(i);
    float a = float(cell_hash(c, mask) & 1023u), b = float(cell_hash(c + ivec2(1, 0), mask) & 1023u);
    float d = float(cell_hash(c + ivec2(0, 1), mask) & 1023u), e = float(cell_hash(c + ivec2(1, 1), mask) & 1023u);
    return mix(mix(a, b, u.x), mix(d, e, u.x), u.y) / 1023.0;
}
layout(location = 0) out vec4 o_colour;
layout(location = 1) out float o_depth;
layout(location = 2) out uvec2 o_ids;
layout(location = 3) out vec4 o_normal;
void main() {
    vec3 n = normalize(v_normal);
    float dist = length(v_rel);
    vec3 view = v_rel / max(dist, 1e-6);
    uint cls;
    if (u_kind == 4) {
        cls = u_tree_class;
    } else if (v_instance != 0u) {
        cls = u_building_class;
    } else if (u_kind == 3) {
        cls = u_rock_class;
    } else {
        ivec2 size = textureSize(u_classes, 0);
        ivec2 texel = clamp(ivec2(floor(v_uv * vec2(size))), ivec2(0), size - 1);
        cls = texelFetch(u_classes, texel, 0).r;
    }
    // water shades alike whichever primitive draws it: the water mesh, or the terrain's and the
    // ground grids' triangles that reach into the water along a shore (texels classed water)
    bool water = u_kind == 1 || ((u_kind == 0 || u_kind == 5) && cls == u_water_class);
    vec3 albedo = u_colour.a > 0.5 ? u_colour.rgb : pow(texture(u_albedo, v_uv).rgb, vec3(2.2));
    if (u_kind == 4) {  // each tree its own shade, from its id
        albedo *= 0.8 + 0.4 * float((v_instance >> 7u) % 97u) / 96.0;
    }
    if (u_kind == 0 || u_kind == 5) {  // ground detail below the ortho's texel size, near the camera only
        float fade = 1.0 - smoothstep(20.0, 60.0, length(v_rel));
        if (fade > 0.0) {
            vec2 world_mod = v_local + u_origin_mod;
            float fine = value_noise(world_mod * 4.0, 4095);  // 0.25 m cells, 1024 m period
            float coarse = value_noise(world_mod, 1023);  // 1 m cells, 1024 m period
            albedo *= 1.0 + fade * (0.22 * (fine - 0.5) + 0.16 * (coarse - 0.5));
        }
    }
    float sun = max(dot(n, u_sun), 0.0);
    vec3 ambient = mix(vec3(0.10, 0.09, 0.08), u_zenith * 0.55, n.z * 0.5 + 0.5);
    vec3 lit = albedo * (vec3(1.0, 0.96, 0.88) * 1.05 * sun + ambient);
    if (water) {
        vec3 up = vec3(0.0, 0.0, 1.0);  // the water surface is level, whatever the triangle's slope
        float f = 0.02 + 0.98 * pow(1.0 - max(dot(-view, up), 0.0), 5.0);
        vec3 r = reflect(view, up);
        lit = mix(lit, sky_colour(r), f) + vec3(1.0) * pow(max(dot(r, u_sun), 0.0), 200.0) * 0.6;
    }
    float haze = 1.0 - exp(-dist / u_visibility);
    vec3 colour = mix(lit, sky_colour(vec3(view.xy, max(view.z, 0.0))), haze);
    if (u_unlit == 1) {
        colour = u_colour.a > 0.5 ? u_colour.rgb : pow(texture(u_albedo, v_uv).rgb, vec3(2.2));
    }
    o_colour = vec4(pow(clamp(colour, 0.0, 1.0), vec3(1.0 / 2.2)), 1.0);
    o_depth = dot(v_rel, u_forward);
    o_ids = uvec2(cls, v_instance);
    o_normal = vec4(n * 0.5 + 0.5, 1.0);
}
"""
