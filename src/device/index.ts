export { type DmaResult, pciDma } from './dma.ts';
export { EDU_DMA_SIZE, EDU_DMA_START, EDU_ID, EduDevice } from './edu.ts';
export * from './pci.ts';
