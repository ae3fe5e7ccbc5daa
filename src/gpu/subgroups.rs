//! Subgroups through wgpu 30 in the browser and natively.
//!
//! wgpu's WebGPU backend does not forward the "subgroups" feature to `requestDevice`. In the
//! browser a small shim wraps `GPUAdapter.prototype.requestDevice` to add it whenever the adapter
//! offers it (this works in Web Workers too), and kernels get `enable subgroups;` prepended
//! (see `shader.rs`). Natively `Features::SUBGROUP` is requested as usual and naga accepts the
//! builtins without the directive. Drop the shim once wgpu maps the feature itself.
//! The shim also records `GPUAdapter.info`, which wgpu does not pass on as the adapter name.

#[cfg(target_arch = "wasm32")]
#[wasm_bindgen::prelude::wasm_bindgen(inline_js = r#"
export function install_subgroups_shim() {
  if (typeof GPUAdapter === 'undefined' || GPUAdapter.prototype.__kjarniSubgroupsShim) return;
  const original = GPUAdapter.prototype.requestDevice;
  GPUAdapter.prototype.requestDevice = function (descriptor) {
    const d = Object.assign({}, descriptor || {});
    const features = Array.from(d.requiredFeatures || []);
    if (this.features.has('subgroups') && !features.includes('subgroups')) features.push('subgroups');
    d.requiredFeatures = features;
    globalThis.__kjarniDeviceHasSubgroups = features.includes('subgroups');
    const i = this.info || {};
    globalThis.__kjarniAdapterName = [i.vendor, i.architecture, i.device, i.description].filter(Boolean).join(' ');
    return original.call(this, d);
  };
  GPUAdapter.prototype.__kjarniSubgroupsShim = true;
}
export function device_has_subgroups() { return globalThis.__kjarniDeviceHasSubgroups === true; }
export function adapter_name() { return globalThis.__kjarniAdapterName || ''; }
"#)]
extern "C" {
    /// Call once before `Adapter::request_device`.
    pub fn install_subgroups_shim();
    /// Whether the last device requested got the "subgroups" feature.
    pub fn device_has_subgroups() -> bool;
    /// vendor / architecture / description from `GPUAdapter.info` (wgpu leaves the name empty).
    pub fn adapter_name() -> String;
}

/// Features to request natively for subgroups (the browser's are added by the shim).
pub fn native_features(adapter: &wgpu::Adapter) -> wgpu::Features {
    adapter.features() & wgpu::Features::SUBGROUP
}

/// Whether the device just created has subgroups.
pub fn device_has(device: &wgpu::Device) -> bool {
    #[cfg(target_arch = "wasm32")]
    {
        let _ = device;
        device_has_subgroups()
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        device.features().contains(wgpu::Features::SUBGROUP)
    }
}
