"""The data layer: opening CF data, units, calendars, grids, regridding, pairing,
normalisation and the torch dataset."""
