// Reference figures per GPU model, from the vendors' public data sheets (dense, no sparsity).
// They are what a card *should* do; the marketplace shows measured figures where it has them and says which.

export type GpuModelSpec = {
  readonly id: string
  readonly displayName: string
  readonly architecture: string
  readonly vramMib: number
  readonly fp32Tflops: number
  readonly fp16TensorTflops: number
  readonly memoryBandwidthGBps: number
  /** Matched against nvidia-smi's product_name, case-insensitively, first match wins. */
  readonly productNamePattern: RegExp
}

export const gpuCatalog: readonly GpuModelSpec[] = [
  spec('h200', 'H200', 'Hopper', 141 * 1024, 67, 989, 4800, /\bH200\b/i),
  spec('h100-pcie', 'H100 PCIe', 'Hopper', 80 * 1024, 51, 756, 2000, /\bH100\b.*PCIe/i),
  spec('h100', 'H100', 'Hopper', 80 * 1024, 67, 989, 3350, /\bH100\b/i),
  spec('a100-80gb', 'A100 80GB', 'Ampere', 80 * 1024, 19.5, 312, 2039, /\bA100\b.*80\s?GB/i),
  spec('a100-40gb', 'A100 40GB', 'Ampere', 40 * 1024, 19.5, 312, 1555, /\bA100\b/i),
  spec('l40s', 'L40S', 'Ada Lovelace', 48 * 1024, 91.6, 362, 864, /\bL40S\b/i),
  spec('l40', 'L40', 'Ada Lovelace', 48 * 1024, 90.5, 181, 864, /\bL40\b/i),
  spec('l4', 'L4', 'Ada Lovelace', 24 * 1024, 30.3, 121, 300, /\bL4\b/i),
  spec('a10g', 'A10G', 'Ampere', 24 * 1024, 31.2, 70, 600, /\bA10G\b/i),
  spec('a10', 'A10', 'Ampere', 24 * 1024, 31.2, 125, 600, /\bA10\b/i),
  spec('rtx-6000-ada', 'RTX 6000 Ada', 'Ada Lovelace', 48 * 1024, 91.1, 364, 960, /RTX 6000 Ada/i),
  spec('rtx-a6000', 'RTX A6000', 'Ampere', 48 * 1024, 38.7, 155, 768, /RTX A6000/i),
  spec('rtx-5090', 'RTX 5090', 'Blackwell', 32 * 1024, 104.8, 209, 1792, /RTX 5090/i),
  spec('rtx-4090', 'RTX 4090', 'Ada Lovelace', 24 * 1024, 82.6, 165, 1008, /RTX 4090/i),
  spec('rtx-4080', 'RTX 4080', 'Ada Lovelace', 16 * 1024, 48.7, 97, 717, /RTX 4080/i),
  spec('rtx-3090', 'RTX 3090', 'Ampere', 24 * 1024, 35.6, 71, 936, /RTX 3090/i),
  spec('rtx-3080', 'RTX 3080', 'Ampere', 10 * 1024, 29.8, 59.5, 760, /RTX 3080/i),
  spec('v100s', 'V100S', 'Volta', 32 * 1024, 16.4, 130, 1134, /\bV100S\b/i),
  spec('v100', 'V100', 'Volta', 32 * 1024, 15.7, 125, 900, /\bV100\b/i),
  spec('t4', 'T4', 'Turing', 16 * 1024, 8.1, 65, 320, /\bT4\b/i),
]

function spec(
  id: string,
  displayName: string,
  architecture: string,
  vramMib: number,
  fp32Tflops: number,
  fp16TensorTflops: number,
  memoryBandwidthGBps: number,
  productNamePattern: RegExp,
): GpuModelSpec {
  return {
    id,
    displayName,
    architecture,
    vramMib,
    fp32Tflops,
    fp16TensorTflops,
    memoryBandwidthGBps,
    productNamePattern,
  }
}

const specsById = new Map(gpuCatalog.map((entry) => [entry.id, entry]))

/** The catalog entry for an nvidia-smi product name, or undefined for a model we have no figures for. */
export function findGpuModel(productName: string): GpuModelSpec | undefined {
  return gpuCatalog.find((entry) => entry.productNamePattern.test(productName))
}

export function gpuModelById(id: string): GpuModelSpec | undefined {
  return specsById.get(id)
}

/** A stable, lower-case model key for search: the catalog id, or a slug of the product name when unknown. */
export function gpuModelKey(productName: string): string {
  const known = findGpuModel(productName)
  if (known) return known.id
  return productName
    .toLowerCase()
    .replace(/^nvidia\s+/, '')
    .replace(/[^a-z0-9]+/g, '-')
    .replace(/^-|-$/g, '')
}

/** What a renter typed for a model ("RTX 4090", "nvidia a100", "a100-80gb") as a key comparable with gpuModelKey. */
export function normalizeModelQuery(text: string): string {
  return text
    .toLowerCase()
    .replace(/^nvidia\s+/, '')
    .replace(/^(geforce|tesla)\s+/, '')
    .replace(/[^a-z0-9]+/g, '-')
    .replace(/^-|-$/g, '')
}
