/** Record lists of the standard inter-patient split (de Chazal et al. 2004) and the paced records. */
export const DS1_RECORDS = ['101', '106', '108', '109', '112', '114', '115', '116', '118', '119', '122', '124',
  '201', '203', '205', '207', '208', '209', '215', '220', '223', '230'] as const;
export const DS2_RECORDS = ['100', '103', '105', '111', '113', '117', '121', '123', '200', '202', '210', '212',
  '213', '214', '219', '221', '222', '228', '231', '232', '233', '234'] as const;
export const PACED_RECORDS = ['102', '104', '107', '217'] as const;

/** The lead the detector and classifiers use: MLII where the record has it, else the first signal. */
export function primaryLeadIndex(leadNames: readonly string[]): number {
  const index = leadNames.findIndex((name) => name.toUpperCase() === 'MLII');
  return index >= 0 ? index : 0;
}
